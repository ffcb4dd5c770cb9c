/// Where and how ``SMTPClient`` delivers mail.
public struct SMTPSettings: Sendable {
    /// The server's host name or IP address (IPv4, or IPv6 with or without brackets).
    public var host: String
    /// The server's TCP port (25, 465 for implicit TLS, 587 for STARTTLS).
    public var port: Int
    /// How the connection is protected.
    public var security: SMTPSecurity
    /// The AUTH user name; the client authenticates when it is set.
    public var username: String?
    /// The AUTH password (never written to errors or logs).
    public var password: String?
    /// A PEM file of CA certificates to trust instead of the system store.
    public var caFile: String?
    /// Whether the server's certificate chain and host name are verified (default true).
    public var verifyCertificate: Bool
    /// The name the client gives in EHLO/HELO.
    public var heloName: String
    /// The longest wait, in seconds, for a connection, a TLS handshake or one reply.
    public var timeoutSeconds: Int

    /// Settings for a server; see the properties for each value.
    public init(
        host: String, port: Int, security: SMTPSecurity, username: String? = nil, password: String? = nil, caFile: String? = nil,
        verifyCertificate: Bool = true, heloName: String = "localhost", timeoutSeconds: Int = 30
    ) {
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self.password = password
        self.caFile = caFile
        self.verifyCertificate = verifyCertificate
        self.heloName = heloName
        self.timeoutSeconds = timeoutSeconds
    }

    /// The host without IPv6 brackets or a trailing dot: what is resolved, sent as SNI and
    /// checked against the certificate.
    var bareHost: String {
        var host = host
        if host.hasPrefix("[") && host.hasSuffix("]") && host.count >= 2 { host = String(host.dropFirst().dropLast()) }
        if host.hasSuffix(".") && host.count > 1 { host.removeLast() }
        return host
    }

    /// `host:port` for messages (`[::1]:25` for IPv6).
    var endpoint: String {
        let host = bareHost
        return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}
