/// OpenAI-compatible chat completions.
public enum ChatCompletion {}
