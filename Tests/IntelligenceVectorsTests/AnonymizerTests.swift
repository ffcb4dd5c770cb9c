import MeltyJSON
import Testing

@testable import IntelligenceVectors

@Suite struct AnonymizerTests {
    @Test func scrubsEmailsPhonesIdsAndDigits() {
        let text = "Write to jane.doe+x@example.co.uk or call +1 (415) 555-0134, ticket 7f3c9a2e-1b4d-4c8e-9f00-123456789abc, account 0012345678, IP 10.1.2.3."
        let scrubbed = Anonymizer().scrub(text)
        for secret in ["jane.doe", "example.co.uk", "555-0134", "7f3c9a2e", "0012345678", "10.1.2.3"] {
            #expect(!scrubbed.contains(secret), "\(secret) survived in \(scrubbed)")
        }
        #expect(scrubbed.contains("[email]"))
        #expect(scrubbed.contains("[phone]"))
        #expect(scrubbed.contains("[id]"))
    }

    @Test func marksReplaceWholeValuesAndKeepPunctuation() {
        #expect(Anonymizer().scrub("Call +1 (415) 555-0134 today, or mail bob.smith@example.org.") == "Call [phone] today, or mail [email].")
        #expect(Anonymizer().scrub("Ask Dr. Watson and Emma Thompson (sales).") == "Ask Dr. [name] and [name] (sales).")
    }

    @Test func keepsDatesTimesAndOrdinaryWords() {
        let text = "The release on 2024-03-15 at 10:30 fixed 3 bugs in the billing module."
        #expect(Anonymizer().scrub(text) == text)
    }

    @Test func scrubsGivenNamesHonorificsAndSurnames() {
        let scrubbed = Anonymizer().scrub("Maria Gonzalez asked Dr. Okonkwo whether Peter van Houten could help.")
        for secret in ["Maria", "Gonzalez", "Okonkwo", "Peter", "Houten"] {
            #expect(!scrubbed.contains(secret), "\(secret) survived in \(scrubbed)")
        }
        #expect(scrubbed.contains("asked"))
    }

    @Test func metadataValuesOfSensitiveKeysAreScrubbedFromTextAndDropped() {
        let metadata: [String: JSONValue] = [
            "customer_name": "Zorblat Quuxley", "email": "zq@corp.test", "userId": "u-99812", "topic": "refunds", "priority": 2,
            "order_number": 98_765_432, "nested": ["phone": "+44 20 7946 0958", "note": "Zorblat was upset"],
        ]
        let anonymizer = Anonymizer(metadata: metadata)
        let text = anonymizer.scrub("Zorblat Quuxley (zq@corp.test, u-99812) wants a refund; quuxley said so twice.")
        for secret in ["Zorblat", "Quuxley", "quuxley", "zq@corp.test", "u-99812"] { #expect(!text.contains(secret), "\(secret) survived in \(text)") }
        let scrubbed = anonymizer.scrub(metadata: metadata)
        #expect(scrubbed["customer_name"] == nil)
        #expect(scrubbed["email"] == nil)
        #expect(scrubbed["userId"] == nil)
        #expect(scrubbed["order_number"] == nil)
        #expect(scrubbed["topic"] == "refunds")
        #expect(scrubbed["priority"] == 2)
        #expect(scrubbed["nested"]?.objectValue?["phone"] == nil)
        #expect(scrubbed["nested"]?.objectValue?["note"] == "[name] was upset")
    }

    @Test func sensitiveKeyDetection() {
        for key in ["id", "user_id", "customerId", "EMAIL", "e-mail", "Phone Number", "full_name", "ip_address", "author", "ssn"] {
            #expect(Anonymizer.isSensitiveKey(key), "\(key)")
        }
        for key in ["topic", "priority", "language", "valid", "paid", "category", "created"] {
            #expect(!Anonymizer.isSensitiveKey(key), "\(key)")
        }
    }

    @Test func hostileTextDoesNotCrash() {
        let hostile = ["", "\u{0}", String(repeating: "9", count: 100_000), "🧨 Zoë Ångström <script>' OR 1=1 --", String(repeating: "a@", count: 5_000)]
        for text in hostile {
            let scrubbed = Anonymizer().scrub(text)
            #expect(!scrubbed.contains("99999999"))
        }
    }
}
