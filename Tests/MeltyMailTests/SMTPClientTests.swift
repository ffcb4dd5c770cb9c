import XCTest

@testable import MeltyMail

final class SMTPClientTests: XCTestCase {}
