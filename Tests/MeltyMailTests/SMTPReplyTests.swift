import XCTest

@testable import MeltyMail

/// The reply parser: single and multi-line replies, malformed and oversized input.
final class SMTPReplyTests: XCTestCase {
    private func parse(_ text: String) throws -> [SMTPReply] {
        try SMTPReply.parseAll(Array(text.utf8))
    }

    func testSingleAndMultiLineReplies() throws {
        let replies = try parse("220 smtp.test ESMTP ready\r\n250-smtp.test\r\n250-SIZE 1000\r\n250-AUTH PLAIN LOGIN\r\n250-STARTTLS\r\n250 HELP\r\n")
        XCTAssertEqual(replies.count, 2)
        XCTAssertEqual(replies[0], SMTPReply(code: 220, lines: ["smtp.test ESMTP ready"]))
        XCTAssertEqual(replies[1].code, 250)
        XCTAssertEqual(replies[1].lines, ["smtp.test", "SIZE 1000", "AUTH PLAIN LOGIN", "STARTTLS", "HELP"])
        XCTAssertEqual(replies[1].extensions["AUTH"], ["PLAIN", "LOGIN"])
        XCTAssertNotNil(replies[1].extensions["STARTTLS"])
        XCTAssertNil(replies[1].extensions["SMTP.TEST"], "the first line is the greeting, not an extension")
    }

    func testCodeOnlyLinesBareLFAndOldAuthSyntax() throws {
        let replies = try parse("250\n250-x\n250-AUTH=LOGIN\n250 8BITMIME\n")
        XCTAssertEqual(replies[0], SMTPReply(code: 250, lines: [""]))
        XCTAssertEqual(replies[1].extensions["AUTH"], ["LOGIN"])
        XCTAssertTrue(SMTPReply(code: 451, lines: ["try later"]).isTransient)
        XCTAssertFalse(SMTPReply(code: 550, lines: ["no"]).isTransient)
    }

    func testMalformedReplies() {
        for text in ["hello\r\n", "25\r\n", "2x0 no\r\n", "250_x\r\n", "999 code\r\n", "100 low\r\n", "250-a\r\n251 b\r\n", "250-unfinished\r\n", "250 no newline"] {
            XCTAssertThrowsError(try parse(text), text.debugDescription)
        }
    }

    func testOversizedReplies() {
        let longLine = "250 " + String(repeating: "x", count: SMTPReply.maximumLineLength) + "\r\n"
        XCTAssertThrowsError(try parse(longLine)) { error in
            XCTAssertTrue((error as? SMTPReply.Malformed)?.reason.contains("longer") ?? false, "\(error)")
        }
        let manyLines = String(repeating: "250-x\r\n", count: SMTPReply.maximumLines + 5) + "250 end\r\n"
        XCTAssertThrowsError(try parse(manyLines)) { error in
            XCTAssertTrue((error as? SMTPReply.Malformed)?.reason.contains("lines") ?? false, "\(error)")
        }
        let fine = String(repeating: "250-x\r\n", count: SMTPReply.maximumLines - 1) + "250 end\r\n"
        XCTAssertEqual((try? parse(fine))?.first?.lines.count, SMTPReply.maximumLines)
    }

    func testReplyTextIsSanitizedAndCapped() {
        let reply = SMTPReply(code: 550, lines: ["bad\u{1B}[31m", String(repeating: "y", count: 1000)])
        XCTAssertFalse(reply.text.contains("\u{1B}"))
        XCTAssertLessThanOrEqual(reply.text.count, 513)
    }
}
