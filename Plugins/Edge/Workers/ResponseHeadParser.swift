import MeltyJSON

/// Reads the RESPONSE_HEAD payload `{"status":200,"headers":[["name","value"],...]}` with
/// MeltyJSON's byte-level reader (``JSONSlices``): the general `JSONValue` decoder cost more
/// than the rest of a request's handling on the host.
public enum ResponseHeadParser {
    /// The status (100...999) and headers, or nil when the payload is not such an object.
    public static func parse(_ bytes: [UInt8]) -> (status: Int, headers: [(String, String)])? {
        guard let members = try? JSONSlices.members(of: bytes),
            let rawStatus = members.first(where: { $0.key == "status" })?.value,
            let status = Int(String(decoding: rawStatus, as: UTF8.self)), (100...999).contains(status)
        else { return nil }
        var headers: [(String, String)] = []
        if let rawHeaders = members.first(where: { $0.key == "headers" })?.value {
            guard let pairs = try? JSONSlices.elements(of: Array(rawHeaders)) else { return nil }
            headers.reserveCapacity(pairs.count)
            for pair in pairs {
                guard let parts = try? JSONSlices.elements(of: Array(pair)), parts.count == 2,
                    let name = JSONSlices.string(parts[0]), let value = JSONSlices.string(parts[1])
                else { return nil }
                headers.append((name, value))
            }
        }
        return (status, headers)
    }
}
