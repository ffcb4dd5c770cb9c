import Foundation
import XCTest

@testable import MeltyMail

/// Rendering (headers, encoded-words, quoted-printable, MIME), header injection, addresses.
final class MailMessageTests: XCTestCase {
    private func address(_ email: String, name: String? = nil) throws -> MailAddress {
        try MailAddress(email, name: name)
    }

    private func render(_ message: MailMessage, messageID: String? = "id-1@example.org") throws -> String {
        let date = Date(timeIntervalSince1970: 1_765_000_000)
        return String(decoding: try message.rendered(date: date, messageID: messageID), as: UTF8.self)
    }

    /// Undoes quoted-printable: soft breaks go, =XX become bytes.
    static func decodeQuotedPrintable(_ text: String) -> String {
        let bytes = Array(text.replacingOccurrences(of: "=\r\n", with: "").utf8)
        var output: [UInt8] = []
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "="), index + 2 < bytes.count,
                let value = UInt8(String(decoding: bytes[(index + 1)...(index + 2)], as: UTF8.self), radix: 16)
            {
                output.append(value)
                index += 3
            } else {
                output.append(bytes[index])
                index += 1
            }
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// Headers and body of a rendered single-part message.
    private func split(_ rendered: String) -> (headers: String, body: String) {
        guard let range = rendered.range(of: "\r\n\r\n") else { return (rendered, "") }
        return (String(rendered[..<range.lowerBound]), String(rendered[range.upperBound...]))
    }

    func testPlainMessageHeadersAndBody() throws {
        let message = MailMessage(
            from: try address("noreply@example.org", name: "Melty Base"), to: [try address("ann@example.com"), try address("bob@example.com", name: "Bob")],
            subject: "Confirm your sign-up", text: "Hello,\nclick the link.\n", headers: [("Reply-To", "help@example.org")])
        let rendered = try render(message)
        let (headers, body) = split(rendered)
        XCTAssertTrue(headers.hasPrefix("Date: "))
        XCTAssertTrue(headers.contains("\r\nFrom: Melty Base <noreply@example.org>\r\n"), headers)
        XCTAssertTrue(headers.contains("\r\nTo: <ann@example.com>, Bob <bob@example.com>\r\n"), headers)
        XCTAssertTrue(headers.contains("\r\nSubject: Confirm your sign-up\r\n"))
        XCTAssertTrue(headers.contains("\r\nMessage-ID: <id-1@example.org>\r\n"))
        XCTAssertTrue(headers.contains("\r\nMIME-Version: 1.0\r\n"))
        XCTAssertTrue(headers.contains("\r\nReply-To: help@example.org\r\n"))
        XCTAssertTrue(headers.contains("Content-Type: text/plain; charset=utf-8"))
        XCTAssertTrue(headers.contains("Content-Transfer-Encoding: quoted-printable"))
        XCTAssertEqual(body, "Hello,\r\nclick the link.\r\n")
        XCTAssertFalse(rendered.contains("multipart"))
        // Every line ends with CRLF.
        XCTAssertFalse(rendered.replacingOccurrences(of: "\r\n", with: "").contains("\n"))
        XCTAssertFalse(rendered.replacingOccurrences(of: "\r\n", with: "").contains("\r"))
    }

    func testDateAndGeneratedMessageID() throws {
        let message = MailMessage(from: try address("a@mail.example.org"), to: [try address("b@example.com")], subject: "s", text: "t")
        let rendered = try render(message, messageID: nil)
        XCTAssertTrue(rendered.contains("Date: Sat, 06 Dec 2025 05:46:40 +0000\r\n"), rendered)
        let pattern = try NSRegularExpression(pattern: "\r\nMessage-ID: <[0-9a-f]{32}@mail\\.example\\.org>\r\n")
        XCTAssertEqual(pattern.numberOfMatches(in: rendered, range: NSRange(rendered.startIndex..., in: rendered)), 1, rendered)
        XCTAssertTrue(try render(message, messageID: "<given@x>").contains("Message-ID: <given@x>\r\n"))
        XCTAssertThrowsError(try render(message, messageID: "a b@x"))
    }

    func testNonASCIISubjectUsesFoldedEncodedWords() throws {
        let subject = "Bestätigen Sie Ihre Anmeldung bei Überall – 確認してください – ünïcödé everywhere, a long subject line"
        let message = MailMessage(from: try address("a@example.org", name: "Zoë Ämter"), to: [try address("b@example.com")], subject: subject, text: "x")
        let (headers, _) = split(try render(message))
        let lines = headers.components(separatedBy: "\r\n")
        guard let start = lines.firstIndex(where: { $0.hasPrefix("Subject: ") }) else { return XCTFail(headers) }
        var subjectLines = [lines[start]]
        for line in lines[(start + 1)...] {
            guard line.hasPrefix(" ") else { break }
            subjectLines.append(line)
        }
        XCTAssertGreaterThan(subjectLines.count, 1, "a long subject is folded")
        var decoded = ""
        for line in subjectLines {
            XCTAssertLessThanOrEqual(line.utf8.count, 78)
            let word = line.replacingOccurrences(of: "Subject: ", with: "").trimmingCharacters(in: .whitespaces)
            XCTAssertTrue(word.hasPrefix("=?UTF-8?B?") && word.hasSuffix("?="), word)
            XCTAssertLessThanOrEqual(word.utf8.count, 75)
            let payload = String(word.dropFirst(10).dropLast(2))
            guard let data = Data(base64Encoded: payload), let text = String(data: data, encoding: .utf8) else {
                return XCTFail("each encoded-word holds whole UTF-8 characters: \(word)")
            }
            decoded += text
        }
        XCTAssertEqual(decoded, subject)
        XCTAssertTrue(headers.contains("From: =?UTF-8?B?"), headers)
        XCTAssertTrue(headers.allSatisfy { $0.isASCII }, "headers are 7-bit")
    }

    func testLongASCIISubjectIsFoldedAtSpaces() throws {
        let subject = Array(repeating: "word", count: 40).joined(separator: " ")
        let message = MailMessage(from: try address("a@example.org"), to: [try address("b@example.com")], subject: subject, text: "x")
        let (headers, _) = split(try render(message))
        for line in headers.components(separatedBy: "\r\n") { XCTAssertLessThanOrEqual(line.utf8.count, 78, line) }
        XCTAssertTrue(headers.replacingOccurrences(of: "\r\n ", with: " ").contains("Subject: " + subject))
    }

    func testQuotedPrintableLongLinesAndNonASCII() throws {
        let long = String(repeating: "abcdefghij", count: 30) + " ünïcödé = end "
        let text = long + "\n.starts with a dot\n.\nlast line"
        let message = MailMessage(from: try address("a@example.org"), to: [try address("b@example.com")], subject: "s", text: text)
        let (_, body) = split(try render(message))
        for line in body.components(separatedBy: "\r\n") {
            XCTAssertLessThanOrEqual(line.utf8.count, 76, line)
            XCTAssertFalse(line.hasSuffix(" "), "trailing white space is escaped: \(line)")
        }
        XCTAssertTrue(body.allSatisfy { $0.isASCII })
        XCTAssertTrue(body.contains("=C3=BC"), "ü is escaped")
        XCTAssertTrue(body.contains("=3D"), "= is escaped")
        XCTAssertTrue(body.contains("=20\r\n"), "a space ending a line is escaped")
        XCTAssertEqual(Self.decodeQuotedPrintable(body), text.replacingOccurrences(of: "\n", with: "\r\n") + "\r\n")
    }

    func testDotStuffing() {
        let message = Array("Subject: x\r\n\r\n.starts with a dot\r\n.\r\nmiddle . dot\r\n..two\r\n".utf8)
        let payload = String(decoding: SMTPSession.dotStuffed(message), as: UTF8.self)
        XCTAssertEqual(payload, "Subject: x\r\n\r\n..starts with a dot\r\n..\r\nmiddle . dot\r\n...two\r\n.\r\n")
        // Bare LF becomes CRLF; a missing final line end is added.
        XCTAssertEqual(String(decoding: SMTPSession.dotStuffed(Array("a\n.b".utf8)), as: UTF8.self), "a\r\n..b\r\n.\r\n")
    }

    func testMultipartAlternative() throws {
        let message = MailMessage(
            from: try address("a@example.org"), to: [try address("b@example.com")], subject: "s", text: "Plain ✓", html: "<p>HTML ✓</p>")
        let rendered = try render(message)
        guard let match = rendered.range(of: "boundary=\"([^\"]+)\"", options: .regularExpression) else { return XCTFail(rendered) }
        let boundary = String(rendered[match].dropFirst("boundary=\"".count).dropLast())
        XCTAssertTrue(rendered.contains("Content-Type: multipart/alternative; boundary=\"\(boundary)\"\r\n"))
        let parts = rendered.components(separatedBy: "\r\n--\(boundary)")
        XCTAssertEqual(parts.count, 4, "preamble, text, html, closing")
        XCTAssertTrue(parts[1].contains("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nPlain =E2=9C=93"))
        XCTAssertTrue(parts[2].contains("Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p>HTML =E2=9C=93</p>"))
        XCTAssertEqual(parts[3], "--\r\n")
    }

    func testHeaderInjectionIsRefused() throws {
        let from = try address("a@example.org")
        let to = [try address("b@example.com")]
        let attempts: [MailMessage] = [
            MailMessage(from: from, to: to, subject: "hi\r\nBcc: victim@example.net", text: "x"),
            MailMessage(from: from, to: to, subject: "hi\nBcc: victim@example.net", text: "x"),
            MailMessage(from: from, to: to, subject: "nul\u{0}", text: "x"),
            MailMessage(from: from, to: to, subject: "s", text: "x", headers: [("X-Note", "a\r\nBcc: victim@example.net")]),
            MailMessage(from: from, to: to, subject: "s", text: "x", headers: [("X-Note\r\nBcc", "a")]),
            MailMessage(from: from, to: to, subject: "s", text: "x", headers: [("Bad Name", "a")]),
            MailMessage(from: from, to: to, subject: "s", text: "x", headers: [("Subject", "second subject")]),
            MailMessage(from: from, to: [], subject: "s", text: "x"),
        ]
        for message in attempts {
            XCTAssertThrowsError(try message.rendered(), "\(message.subject) \(message.headers)") { error in
                XCTAssertTrue(error is MailError)
            }
        }
        do {
            _ = try attempts[0].rendered()
        } catch {
            XCTAssertTrue(error.description.contains("header injection"), error.description)
        }
    }

    func testAddressValidation() throws {
        XCTAssertNoThrow(try MailAddress("user@example.com"))
        XCTAssertNoThrow(try MailAddress("first.last+tag@sub.example.co.uk", name: "First \"Quote\" Last"))
        let bad = [
            "", "no-at-sign", "@example.com", "user@", "user@example.com\r\nRCPT TO:<x@y>", "user@exa\nmple.com", "us\u{0}er@example.com",
            "<user@example.com>", "user@example.com>", "two words@example.com", String(repeating: "a", count: 250) + "@x.com",
        ]
        for email in bad {
            XCTAssertThrowsError(try MailAddress(email), email.debugDescription)
        }
        XCTAssertThrowsError(try MailAddress("a@example.com", name: "Evil\r\nBcc: x@y"))
        XCTAssertThrowsError(try MailAddress("a@example.com", name: "nul\u{0}"))
        XCTAssertNoThrow(try MailAddress(String(repeating: "a", count: 240) + "@example.com"))
    }

    func testQuotedDisplayName() throws {
        let message = MailMessage(from: try address("a@example.org", name: "Support, \"Team\""), to: [try address("b@example.com")], subject: "s", text: "x")
        XCTAssertTrue(try render(message).contains("From: \"Support, \\\"Team\\\"\" <a@example.org>\r\n"))
    }
}
