import Foundation

/// The two encodings the auth API writes into tokens and links.
enum AuthEncoding {
    /// Unpadded base64url (RFC 4648 §5) of `bytes`.
    static func base64URL(_ bytes: some Sequence<UInt8>) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// RFC 3986's unreserved characters (ASCII only: Foundation's `alphanumerics` would let
    /// non-ASCII letters through unencoded).
    private static let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

    /// `text` as one query value: everything but the unreserved characters percent-encoded.
    static func queryValue(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: unreserved) ?? ""
    }
}
