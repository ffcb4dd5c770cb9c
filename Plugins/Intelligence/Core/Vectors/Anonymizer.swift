import Foundation
import MeltyJSON

/// Scrubs what identifies a person from an entry before it is published to the mesh:
/// emails, phone numbers, person names, UUIDs and other ids, IP addresses and long digit
/// runs in text; metadata keys that hold ids, names, emails or phone numbers are dropped
/// and their values are scrubbed from the entry's text as well.
///
/// The name detection is a heuristic (common given names, honorifics followed by a
/// capitalised word, and every value of a name-like metadata key); it errs towards
/// scrubbing. `docs/intelligence-vectors.md` lists what it catches and what it cannot.
public struct Anonymizer: Sendable {
    /// What replaced an email address.
    public static let emailMark = "[email]"
    /// What replaced a phone number.
    public static let phoneMark = "[phone]"
    /// What replaced a person's name.
    public static let nameMark = "[name]"
    /// What replaced an id (UUID, token, account number).
    public static let idMark = "[id]"
    /// What replaced a long run of digits.
    public static let numberMark = "[number]"

    /// Values (from the entry's sensitive metadata) that are scrubbed wherever they appear.
    public private(set) var knownValues: [String] = []

    /// An anonymizer that knows no extra values.
    public init() {}

    /// An anonymizer for one entry: the values of its sensitive metadata keys (and their
    /// words of 3 or more letters) are scrubbed from its text too.
    public init(metadata: [String: JSONValue]) {
        var values: Set<String> = []
        Self.collectSensitive(.object(metadata), sensitive: false, into: &values)
        knownValues = values.filter { $0.count >= 3 }.sorted { $0.count > $1.count }
    }

    /// Whether a metadata key names something that identifies a person or a record.
    public static func isSensitiveKey(_ key: String) -> Bool {
        let lower = key.lowercased()
        let folded = lower.filter { $0.isLetter || $0.isNumber }
        if sensitiveKeys.contains(folded) { return true }
        if lower.hasSuffix("_id") || lower.hasSuffix("-id") || lower.hasSuffix(" id") || lower.hasSuffix("_ids") { return true }
        if key.count > 2, key.hasSuffix("Id") || key.hasSuffix("ID") { return true }
        return sensitiveFragments.contains { folded.contains($0) }
    }

    private static let sensitiveKeys: Set<String> = [
        "id", "ids", "uuid", "guid", "uid", "sub", "user", "username", "login", "author", "owner", "customer", "client", "contact", "person",
        "address", "street", "ip", "ipaddress", "ssn", "dob", "birthdate", "birthday", "dateofbirth", "passport", "iban", "account",
        "accountnumber", "creditcard", "cardnumber", "token", "apikey", "password", "secret", "signature", "tel", "telephone", "mobile", "cell",
        "fax", "mail", "zip", "postcode", "postalcode", "license", "licence",
    ]
    private static let sensitiveFragments = ["email", "phone", "name", "mobile", "address", "ssn", "passport", "iban"]

    private static func collectSensitive(_ value: JSONValue, sensitive: Bool, into values: inout Set<String>) {
        switch value {
        case .string(let text) where sensitive:
            let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
            values.insert(trimmed)
            for word in trimmed.split(whereSeparator: { !$0.isLetter && !$0.isNumber && $0 != "@" && $0 != "." && $0 != "+" }) where word.count >= 3 {
                values.insert(String(word))
            }
        case .number(let number) where sensitive:
            if let integer = Int64(exactly: number), abs(integer) >= 100 { values.insert(String(integer)) }
        case .array(let items):
            for item in items { collectSensitive(item, sensitive: sensitive, into: &values) }
        case .object(let members):
            for (key, member) in members { collectSensitive(member, sensitive: sensitive || isSensitiveKey(key), into: &values) }
        default: break
        }
    }

    /// `text` with every email, phone number, id, long digit run, person name and known
    /// value replaced by a mark (`[email]`, `[phone]`, `[id]`, `[number]`, `[name]`).
    /// Runs in time linear in the text (a token scan, no backtracking patterns).
    public func scrub(_ text: String) -> String {
        var result = text
        for value in knownValues {
            let mark = value.contains("@") ? Self.emailMark : (value.allSatisfy(\.isNumber) ? Self.numberMark : Self.nameMark)
            result = result.replacingOccurrences(of: value, with: mark, options: [.caseInsensitive])
        }
        var tokens = Self.tokens(of: result)
        Self.markPhones(&tokens)
        Self.markNames(&tokens)
        for index in tokens.indices where !tokens[index].isSpace && tokens[index].mark == nil {
            tokens[index].mark = Self.classify(tokens[index].core)
        }
        return tokens.map { token in token.mark.map { token.prefix + $0 + token.suffix } ?? token.text }.joined()
    }

    /// A run of spaces, or a word with its surrounding punctuation split off.
    private struct Token {
        var text: String
        var isSpace: Bool
        var prefix = ""
        var core = ""
        var suffix = ""
        var mark: String?
    }

    private static let leading: Set<Character> = ["(", "[", "{", "<", "\"", "'", "“", "‘", "«"]
    private static let trailing: Set<Character> = [".", ",", ";", ":", "!", "?", ")", "]", "}", ">", "\"", "'", "”", "’", "»"]

    private static func tokens(of text: String) -> [Token] {
        var tokens: [Token] = []
        var current = ""
        var currentIsSpace = false
        func flush() {
            guard !current.isEmpty else { return }
            var token = Token(text: current, isSpace: currentIsSpace)
            if !currentIsSpace {
                var core = Substring(current)
                while let first = core.first, leading.contains(first) { core = core.dropFirst() }
                while let last = core.last, trailing.contains(last) { core = core.dropLast() }
                let start = current.distance(from: current.startIndex, to: core.startIndex)
                token.prefix = String(current.prefix(start))
                token.core = String(core)
                token.suffix = String(current.dropFirst(start + core.count))
            }
            tokens.append(token)
            current = ""
        }
        for character in text {
            let space = character.isWhitespace
            if space != currentIsSpace { flush() }
            currentIsSpace = space
            current.append(character)
        }
        flush()
        return tokens
    }

    /// Runs of tokens made of digits and `+ ( ) - . /` with 9 or more digits (7 after a `+`)
    /// become one `[phone]`; dates and times have fewer digits or other characters.
    private static func markPhones(_ tokens: inout [Token]) {
        func phoneLike(_ token: Token) -> Bool {
            !token.core.isEmpty && token.core.allSatisfy { $0.isASCII && ($0.isNumber || "+()-./".contains($0)) }
                && token.core.contains(where: \.isNumber)
        }
        var index = 0
        while index < tokens.count {
            guard !tokens[index].isSpace, phoneLike(tokens[index]) else {
                index += 1
                continue
            }
            var end = index
            var probe = index
            while probe + 2 < tokens.count, tokens[probe + 1].isSpace, tokens[probe + 1].text.count <= 2, phoneLike(tokens[probe + 2]) {
                probe += 2
                end = probe
            }
            let run = tokens[index...end].map(\.text).joined().trimmingCharacters(in: CharacterSet(charactersIn: "(["))
            let digits = run.filter(\.isNumber).count
            if digits >= 9 || (run.hasPrefix("+") && digits >= 7) || (run.hasPrefix("(") && digits >= 9) {
                tokens[index].mark = phoneMark
                tokens[index].suffix = tokens[end].suffix
                for removed in (index + 1)...max(index + 1, end) where removed <= end {
                    tokens[removed].mark = ""
                    tokens[removed].prefix = ""
                    tokens[removed].suffix = ""
                }
            }
            index = end + 1
        }
    }

    private static func isCapitalised(_ word: String) -> Bool {
        guard let first = word.unicodeScalars.first, word.count >= 2 else { return false }
        return CharacterSet.uppercaseLetters.contains(first) && word.dropFirst().allSatisfy { $0.isLetter || $0 == "-" || $0 == "'" || $0 == "’" }
            && word.dropFirst().contains(where: \.isLowercase)
    }

    /// A given name or an honorific, and the capitalised words (and particles) after it.
    private static func markNames(_ tokens: inout [Token]) {
        let words = tokens.indices.filter { !tokens[$0].isSpace }
        var position = 0
        while position < words.count {
            let index = words[position]
            let core = tokens[index].core
            let isHonorific = honorifics.contains(core) && (tokens[index].suffix.isEmpty || tokens[index].suffix == ".")
            let isGiven = givenNameSet.contains(core)
            guard isHonorific || isGiven else {
                position += 1
                continue
            }
            if isGiven { tokens[index].mark = nameMark }
            var next = position + 1
            var taken = 0
            while next < words.count, taken < 3, tokens[words[next - 1]].suffix.isEmpty || (next == position + 1 && isHonorific) {
                let word = tokens[words[next]].core
                if particles.contains(word), next + 1 < words.count, isCapitalised(tokens[words[next + 1]].core) {
                    tokens[words[next]].mark = nameMark
                } else if isCapitalised(word) {
                    tokens[words[next]].mark = nameMark
                    taken += 1
                } else {
                    break
                }
                next += 1
            }
            position = next
        }
        // Adjacent marks read as one name.
        var previousWord: Int?
        for index in tokens.indices where !tokens[index].isSpace {
            if let previous = previousWord, tokens[previous].mark == nameMark, tokens[index].mark == nameMark, tokens[previous].suffix.isEmpty,
                tokens[index].prefix.isEmpty
            {
                tokens[previous].mark = ""
                if previous + 1 < index { for space in (previous + 1)..<index { tokens[space].mark = "" } }
            }
            previousWord = index
        }
    }

    /// What one word is, if it identifies something: an email, a UUID or IP, a long number,
    /// or a token mixing letters and 2 or more digits (account numbers, API ids).
    private static func classify(_ word: String) -> String? {
        if word.isEmpty { return nil }
        let characters = Array(word)
        if let at = characters.firstIndex(of: "@"), at > 0, characters[(at + 1)...].contains("."), characters.count - at > 3 { return emailMark }
        let digits = characters.filter(\.isNumber).count
        let letters = characters.filter(\.isLetter).count
        let hex = characters.filter(\.isHexDigit).count
        if hex >= 32 && characters.allSatisfy({ $0.isHexDigit || $0 == "-" }) { return idMark }
        let parts = word.split(separator: ".", omittingEmptySubsequences: false)
        if parts.count == 4, parts.allSatisfy({ (1...3).contains($0.count) && $0.allSatisfy(\.isNumber) }) { return idMark }
        if letters == 0 && digits >= 6 {
            var run = 0
            for character in characters {
                run = character.isNumber ? run + 1 : 0
                if run >= 6 { return numberMark }
            }
            if digits >= 9 && characters.allSatisfy({ $0.isNumber || "-./ ".contains($0) }) { return numberMark }
        }
        if letters > 0 && digits >= 2 && characters.count >= 8 && characters.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) {
            return idMark
        }
        if letters > 0, digits >= 6 {
            var run = 0
            for character in characters {
                run = character.isNumber ? run + 1 : 0
                if run >= 6 { return numberMark }
            }
        }
        return nil
    }

    /// `metadata` with sensitive keys dropped, strings scrubbed and integers of 6 or more
    /// digits (which look like ids) dropped; nested objects and arrays likewise.
    public func scrub(metadata: [String: JSONValue]) -> [String: JSONValue] {
        var result: [String: JSONValue] = [:]
        for (key, value) in metadata where !Self.isSensitiveKey(key) {
            let scrubbedKey = scrub(key)
            guard scrubbedKey == key, let kept = scrub(value: value) else { continue }
            result[key] = kept
        }
        return result
    }

    private func scrub(value: JSONValue) -> JSONValue? {
        switch value {
        case .string(let text): return .string(scrub(text))
        case .number(let number):
            if let integer = Int64(exactly: number), abs(integer) >= 100_000 { return nil }
            return value
        case .array(let items): return .array(items.compactMap { scrub(value: $0) })
        case .object(let members): return .object(scrub(metadata: members))
        case .null, .bool: return value
        }
    }

    private static let givenNames =
        "Aaron|Abigail|Adam|Adrian|Ahmed|Aisha|Alan|Albert|Alex|Alexander|Alexandra|Alice|Alicia|Amanda|Amelia|Amir|Amy|Ana|Andrea|Andrew|Angela|Anna|Anne|Anthony|Antonio|Arthur|Ava|Barbara|Benjamin|Bernard|Beth|Betty|Boris|Brandon|Brian|Bruce|Camille|Carl|Carla|Carlos|Carol|Caroline|Catherine|Charles|Charlie|Charlotte|Chen|Chloe|Chris|Christian|Christina|Christine|Christopher|Claire|Claudia|Daniel|Daniela|David|Deborah|Dennis|Diana|Diego|Dmitri|Donald|Dorothy|Douglas|Edward|Elena|Elizabeth|Ella|Emily|Emma|Eric|Erik|Eva|Fatima|Felix|Fernando|Fiona|Francesca|Francis|Francisco|Gabriel|Gary|George|Georg|Giulia|Giuseppe|Gregory|Hannah|Hans|Harry|Helen|Henry|Hugo|Ian|Igor|Ingrid|Isabel|Isabella|Ivan|Jack|Jacob|James|Jan|Jane|Janet|Jason|Javier|Jean|Jennifer|Jessica|Joan|Joe|John|Jonathan|Jorge|Jose|Joseph|Joshua|Juan|Julia|Julie|Karen|Katherine|Kathleen|Kenneth|Kevin|Kim|Klaus|Laura|Lauren|Leo|Liam|Linda|Lisa|Lucas|Lucy|Luis|Luka|Lukas|Maria|Marie|Mario|Martin|Mary|Matthew|Max|Maya|Megan|Mia|Michael|Michelle|Miguel|Mohammed|Muhammad|Nancy|Natalia|Nicholas|Nicole|Noah|Oliver|Olivia|Oscar|Pablo|Pamela|Patricia|Patrick|Paul|Paula|Pedro|Peter|Philip|Pierre|Rachel|Raj|Rebecca|Richard|Robert|Roberto|Ronald|Ruth|Ryan|Samuel|Sandra|Sara|Sarah|Scott|Sebastian|Sergei|Sharon|Sophia|Sophie|Stefan|Stephanie|Stephen|Steven|Susan|Thomas|Timothy|Tom|Tyler|Victoria|Vincent|Walter|William|Wei|Yuki|Zoe"

    private static let givenNameSet = Set(givenNames.split(separator: "|").map(String.init))
    private static let honorifics: Set<String> = [
        "Mr", "Mrs", "Ms", "Miss", "Mx", "Dr", "Prof", "Sir", "Dame", "Herr", "Frau", "Mme", "Mlle", "Señor", "Señora", "Madame", "Monsieur",
    ]
    private static let particles: Set<String> = ["van", "von", "de", "da", "del", "di", "le", "la", "der", "den", "du", "bin", "al"]
}
