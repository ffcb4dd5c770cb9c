/// Diagnoses failed SQL from the catalog (no model needed).
public enum SQLDoctor {}
