import IntelligenceVectors

// The in-process side of Benchmarks/vectors.sh (filled in by the Knowledge Mesh part).
print(VectorIndexLibrary.version)
