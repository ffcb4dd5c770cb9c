/// One OpenClaw agent run.
public enum AgentRun {}
