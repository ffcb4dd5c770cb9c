import CHNSW

/// An HNSW index over fixed-dimension vectors (hnswlib through CHNSW).
public enum VectorIndexLibrary {
    /// Which hnswlib this build uses.
    public static var version: String { String(cString: chnsw_version()) }
}
