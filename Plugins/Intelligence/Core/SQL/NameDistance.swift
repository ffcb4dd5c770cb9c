/// Edit distances between names, for "did you mean" suggestions.
public enum NameDistance {
    /// Names longer than this are compared by their first this many scalars (Postgres
    /// identifiers have at most 63 bytes; the cap keeps hostile input cheap).
    public static let maxLength = 128

    /// Levenshtein distance of `a` and `b` (insertions, deletions, substitutions).
    public static func levenshtein(_ a: String, _ b: String) -> Int {
        let left = Array(a.unicodeScalars.prefix(maxLength))
        let right = Array(b.unicodeScalars.prefix(maxLength))
        if left.isEmpty { return right.count }
        if right.isEmpty { return left.count }
        var previous = Array(0...right.count)
        var current = [Int](repeating: 0, count: right.count + 1)
        for i in 1...left.count {
            current[0] = i
            for j in 1...right.count {
                let cost = left[i - 1] == right[j - 1] ? 0 : 1
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            }
            swap(&previous, &current)
        }
        return previous[right.count]
    }

    /// The largest distance still worth suggesting for a name of `length` scalars.
    public static func threshold(forLength length: Int) -> Int { max(2, min(4, length / 3)) }

    /// Names from `candidates` nearest to `name` ignoring case, closest first (ties keep
    /// the candidates' order), at most `limit`, none farther than the threshold.
    public static func nearest(to name: String, in candidates: [String], limit: Int = 3) -> [(name: String, distance: Int)] {
        let target = name.lowercased()
        let limitDistance = threshold(forLength: target.unicodeScalars.count)
        var scored: [(name: String, distance: Int, order: Int)] = []
        var seen = Set<String>()
        for (order, candidate) in candidates.enumerated() where seen.insert(candidate).inserted {
            let distance = levenshtein(target, candidate.lowercased())
            if distance <= limitDistance { scored.append((candidate, distance, order)) }
        }
        scored.sort { ($0.distance, $0.order) < ($1.distance, $1.order) }
        return scored.prefix(limit).map { ($0.name, $0.distance) }
    }
}
