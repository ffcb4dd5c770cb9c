import Foundation
import MeltyTestServices
import Testing

@testable import Kernel

/// The usage meter in memory, the flush's merge on a real Postgres, the CSV rendering, the
/// price computation, quota evaluation and the `[metering]`/`[quotas]`/`[prices]` config.
@Suite("Metering: meter, flush merge, CSV, billing, quotas, config", .timeLimit(.minutes(3)))
struct MeteringTests {
    static let hour = Date(timeIntervalSince1970: 1_796_000_400)  // an hour's start

    @Test("the meter counts requests by plugin and status class, bytes, counters and marks, and drains to zero")
    func meterCountsAndDrains() {
        let meter = UsageMeter(settings: HubSettings())
        let usage = try! #require(meter.usage(for: "acme"))
        #expect(meter.usage(for: "acme") === usage)
        let traffic = usage.traffic(for: "database")
        #expect(usage.traffic(for: "database") === traffic)
        for status in [200, 201, 204, 304, 404, 401, 500, 101] { traffic.record(status: status, bytesIn: 10, bytesOut: 100) }
        traffic.addBytesOut(5)
        usage.add(counter: "Edge Invocations", plugin: "edge", delta: 3)
        usage.add(counter: "edge invocations", plugin: "edge", delta: 2)
        usage.add(counter: "requests", plugin: "evil", delta: 7)
        usage.mark(set: "auth_users", member: Array("user-1".utf8))
        usage.mark(set: "auth_users", member: Array("user-1".utf8))
        usage.mark(set: "auth_users", member: Array("user-2".utf8))
        let batch = meter.drain()
        func sum(_ metric: String, _ dimension: String) -> Double? { batch.sums[.init(portal: "acme", metric: metric, dimension: dimension)] }
        #expect(sum("requests", "database:2xx") == 4)  // 200, 201, 204 and 101
        #expect(sum("requests", "database:3xx") == 1)
        #expect(sum("requests", "database:4xx") == 2)
        #expect(sum("requests", "database:5xx") == 1)
        #expect(sum("bytes_in", "database") == 80)
        #expect(sum("bytes_out", "database") == 805)
        #expect(sum("edge_invocations", "edge") == 5)
        #expect(sum("plugin_requests", "evil") == 7)
        #expect(sum("requests", "evil") == nil)
        #expect(batch.marks.count == 2)
        #expect(batch.marks.allSatisfy { $0.memberHash.count == 64 && $0.set == "auth_users" })
        #expect(!batch.marks.contains { $0.memberHash.contains("user") })
        #expect(meter.drain().isEmpty)
        // What a failed flush gives back is written with the next one.
        meter.restore(batch)
        traffic.record(status: 200, bytesIn: 0, bytesOut: 0)
        #expect(meter.drain().sums[.init(portal: "acme", metric: "requests", dimension: "database:2xx")] == 5)
        let text = meter.prometheusText()
        #expect(text.contains(#"meltybase_usage_requests_total{portal="acme",plugin="database",class="2xx"} 5"#))
        #expect(text.contains(#"meltybase_usage_counter_total{portal="acme",plugin="edge",metric="edge_invocations"} 5"#))
    }

    @Test("a `_peak` counter keeps the largest value reported (a gauge), not the sum, and shows on /metrics")
    func peaksKeepTheMaximum() throws {
        let meter = UsageMeter(settings: HubSettings())
        let usage = try #require(meter.usage(for: "acme"))
        for open in [3, 7, 5] { usage.add(counter: "connections_peak", plugin: "realtime", delta: Int64(open)) }
        usage.add(counter: "edge_cpu_ms", plugin: "edge", delta: 40)
        usage.add(counter: "edge_cpu_ms", plugin: "edge", delta: 2)
        let batch = meter.drain()
        let peak = UsageBatch.Key(portal: "acme", metric: "connections_peak", dimension: "realtime")
        #expect(batch.maxima[peak] == 7)
        #expect(batch.sums[peak] == nil)
        #expect(batch.sums[.init(portal: "acme", metric: "edge_cpu_ms", dimension: "edge")] == 42)
        #expect(meter.prometheusText().contains(#"meltybase_usage_peak{portal="acme",plugin="realtime",metric="connections_peak"} 7"#))
        #expect(UsageMetric.isPeak("connections_peak") && !UsageMetric.isPeak("peak_connections"))
    }

    @Test("metering off: no usage objects, so the gateway counts nothing")
    func meteringOff() {
        var settings = HubSettings()
        settings.meteringEnabled = false
        #expect(UsageMeter(settings: settings).usage(for: "acme") == nil)
    }

    @Test("a hard breach makes the portal's requests 429 quota_exceeded naming the quota, with Retry-After")
    func hardBreachRefuses() throws {
        let usage = PortalUsage(portal: "acme")
        #expect(usage.refusal() == nil)
        let now = Date(timeIntervalSince1970: 1_796_083_200 - 3600)  // an hour before a month ends
        usage.hardBreach = QuotaBreach(metric: "requests", limit: 100, total: 104, resetsAt: UsageClock.nextMonth(now))
        let error = try #require(usage.refusal(now: now))
        #expect(error.statusCode == 429 && error.code == "quota_exceeded")
        #expect(error.message.contains("requests_per_month") && error.message.contains("104 of 100"))
        let retry = error.extraHeaders.first { $0.0 == "Retry-After" }?.1
        #expect(retry.flatMap(Int.init) == Int(UsageClock.nextMonth(now).timeIntervalSince(now)))
        usage.hardBreach = nil
        #expect(usage.refusal() == nil)
    }

    @Test("two flushes into the same hour add up (ON CONFLICT ... value + EXCLUDED.value); gauges keep the maximum; marks count once")
    func flushMerges() async throws {
        let database = SystemDatabase(conninfo: try TestServices.freshDatabase())
        defer { database.close() }
        try await database.migrate()
        let store = UsageStore(database: database)
        let key = UsageBatch.Key(portal: "acme", metric: "requests", dimension: "database:2xx")
        let size = UsageBatch.Key(portal: "acme", metric: "db_size_bytes", dimension: "")
        var first = UsageBatch()
        first.sums[key] = 3
        first.maxima[size] = 500
        first.marks = [.init(portal: "acme", set: "auth_users", memberHash: "aa"), .init(portal: "acme", set: "auth_users", memberHash: "bb")]
        var second = UsageBatch()
        second.sums[key] = 4
        second.maxima[size] = 400
        second.marks = [.init(portal: "acme", set: "auth_users", memberHash: "bb")]
        // As two kernels would, at once.
        async let one: Void = store.flush(first, hour: Self.hour)
        async let two: Void = store.flush(second, hour: Self.hour)
        _ = try await (one, two)
        let rows = try await store.rows(portal: "acme", from: Self.hour, to: Self.hour.addingTimeInterval(3600), granularity: .hour, limit: 100)
        #expect(rows.first { $0.metric == "requests" }?.value == 7)
        #expect(rows.first { $0.metric == "db_size_bytes" }?.value == 500)
        let totals = try await store.monthlyTotals(month: Self.hour)
        #expect(totals["acme"]?["requests"] == 7)
        #expect(totals["acme"]?["active_auth_users"] == 2)
        let months = try await store.rows(portal: "acme", from: UsageClock.month(Self.hour), to: UsageClock.nextMonth(Self.hour), granularity: .month, limit: 100)
        #expect(months.first { $0.metric == "active_auth_users" }?.value == 2)
        #expect(try await store.knows(portal: "acme"))
        #expect(try await !store.knows(portal: "nobody"))
        #expect(try await store.recordQuotaEvent(portal: "acme", month: Self.hour, metric: "requests", level: "soft", total: 7, limit: 5))
        #expect(try await !store.recordQuotaEvent(portal: "acme", month: Self.hour, metric: "requests", level: "soft", total: 8, limit: 5))
    }

    @Test("CSV: header, CRLF, quoting, formula guard, integers without a fraction")
    func csv() {
        let rows = [
            UsageStore.Row(portal: "acme", period: "2026-12-06T01:00:00Z", metric: "requests", dimension: "database:2xx", value: 12),
            UsageStore.Row(portal: "acme", period: "2026-12-06T01:00:00Z", metric: "odd", dimension: "a,\"b\"", value: 0.5),
            UsageStore.Row(portal: "acme", period: "2026-12-06T01:00:00Z", metric: "=cmd()", dimension: "-1", value: 1),
        ]
        #expect(
            UsageCSV.render(rows)
                == "portal,period,metric,dimension,value\r\n"
                + "acme,2026-12-06T01:00:00Z,requests,database:2xx,12\r\n"
                + "acme,2026-12-06T01:00:00Z,odd,\"a,\"\"b\"\"\",0.5\r\n"
                + "acme,2026-12-06T01:00:00Z,'=cmd(),-1,1\r\n")
    }

    @Test("billing: included amounts, started units, cents, base price and total")
    func billing() {
        var book = PriceBook()
        book.currency = "USD"
        book.basePrice = Decimal(string: "25")!
        book.metrics["requests"] = MetricPrice(unitPrice: Decimal(string: "0.40")!, unitSize: 1000, included: 10_000)
        book.metrics["bytes_out"] = MetricPrice(unitPrice: Decimal(string: "0.09")!, unitSize: 1e9)
        book.metrics["active_auth_users"] = MetricPrice(unitPrice: Decimal(string: "0.00325")!, unitSize: 1, included: 50)
        let summary = BillingSummary.compute(
            portal: "acme", period: "2026-12", tier: "indie", book: book,
            totals: ["requests": 12_001, "bytes_out": 2.5e9, "active_auth_users": 51, "unpriced": 9])
        #expect(summary.lines.map(\.metric) == ["active_auth_users", "bytes_out", "requests"])
        let requests = summary.lines[2]
        #expect(requests.billable == 2001 && requests.units == 3 && requests.amount == Decimal(string: "1.2")!)
        #expect(summary.lines[1].units == 3 && summary.lines[1].amount == Decimal(string: "0.27")!)
        #expect(summary.lines[0].billable == 1 && summary.lines[0].amount == Decimal(0))  // 0.00325 rounds to 0.00
        #expect(summary.usageTotal == Decimal(string: "1.47")!)
        #expect(summary.total == Decimal(string: "26.47")!)
        let nothing = BillingSummary.compute(portal: "acme", period: "2026-12", tier: "indie", book: book, totals: [:])
        #expect(nothing.total == Decimal(25) && nothing.lines.allSatisfy { $0.quantity == 0 && $0.amount == 0 })
    }

    @Test("quota evaluation: ok, soft at the soft limit, hard at the hard limit; portal limits replace the tier's")
    func quotas() {
        var settings = HubSettings()
        settings.tierQuotas["indie"] = ["requests": QuotaLimit(soft: 80, hard: 100), "bytes_out": QuotaLimit(hard: 1000)]
        settings.portalQuotas["big"] = ["requests": QuotaLimit(soft: 800, hard: 1000)]
        let small = QuotaState.evaluate(portal: "small", limits: settings.quotas(portal: "small", tier: "indie"), totals: ["requests": 80, "bytes_out": 10])
        #expect(small.map(\.level) == [.ok, .soft])
        #expect(small.map(\.quota) == ["bytes_out_per_month", "requests_per_month"])
        let full = QuotaState.evaluate(portal: "small", limits: settings.quotas(portal: "small", tier: "indie"), totals: ["requests": 100, "bytes_out": 1000])
        #expect(full.map(\.level) == [.hard, .hard])
        let big = QuotaState.evaluate(portal: "big", limits: settings.quotas(portal: "big", tier: "indie"), totals: ["requests": 100])
        #expect(big.first { $0.metric == "requests" }?.level == .ok)
        #expect(settings.quotas(portal: "small", tier: "commercial").isEmpty)
    }

    @Test("config: [metering], [quotas], [prices] parse; mistakes name the key")
    func config() throws {
        let text = """
            [metering]
            enabled = false
            flush_interval_seconds = 5

            [quotas.indie]
            requests_per_month = { soft = 800000, hard = 1000000 }

            [quotas.portals.acme]
            bytes_out_per_month = { hard = 5e9 }

            [prices.commercial]
            currency = "USD"
            base_price = 49.5
            requests = { unit_price = 0.4, unit_size = 1000, included = 100000 }
            """
        let config = try ConfigLoader(environment: [:]).parse(text, path: "/tmp/plugins.toml")
        #expect(!config.hub.meteringEnabled && config.hub.flushIntervalSeconds == 5)
        #expect(config.hub.tierQuotas["indie"]?["requests"] == QuotaLimit(soft: 800_000, hard: 1_000_000))
        #expect(config.hub.portalQuotas["acme"]?["bytes_out"] == QuotaLimit(hard: 5e9))
        let book = try #require(config.hub.prices["commercial"])
        #expect(book.currency == "USD" && book.basePrice == Decimal(string: "49.5")!)
        #expect(book.metrics["requests"] == MetricPrice(unitPrice: Decimal(string: "0.4")!, unitSize: 1000, included: 100_000))
        let defaults = try ConfigLoader(environment: [:]).parse("", path: "/tmp/plugins.toml")
        #expect(defaults.hub.meteringEnabled && defaults.hub.flushIntervalSeconds == 60)

        for (bad, key) in [
            ("[metering]\nflush_interval_seconds = 0\n", "metering.flush_interval_seconds"),
            ("[metering]\nspeed = 1\n", "metering.speed"),
            ("[quotas.indie]\nrequests = { hard = 1 }\n", "quotas.indie.requests"),
            ("[quotas.indie]\nrequests_per_month = { soft = 5, hard = 1 }\n", "quotas.indie.requests_per_month"),
            ("[quotas.gold]\nrequests_per_month = { hard = 1 }\n", "quotas.gold"),
            ("[prices.indie]\ncurrency = \"euro\"\n", "prices.indie.currency"),
            ("[prices.indie]\nrequests = { unit_size = 10 }\n", "prices.indie.requests"),
            ("[prices.indie]\nrequests = { unit_price = -1 }\n", "prices.indie.requests.unit_price"),
        ] {
            #expect(throws: ConfigError.self) { try ConfigLoader(environment: [:]).parse(bad, path: "/tmp/plugins.toml") }
            do {
                _ = try ConfigLoader(environment: [:]).parse(bad, path: "/tmp/plugins.toml")
            } catch let error as ConfigError {
                #expect(error.key == key, "\(bad)")
            }
        }
    }

    @Test("dates: ISO 8601 shapes in 2000...9999 only; months as YYYY-MM")
    func dates() {
        #expect(TimeParameter.parse("2026-12-06") != nil)
        #expect(TimeParameter.parse("2026-12-06T01:02:03Z") != nil)
        #expect(TimeParameter.parse("2026-12-06T01:02:03.5+02:00") != nil)
        for bad in ["", "yesterday", "2026-13-01", "1999-12-31", "2026-12-06T01:02:03+99:99", "2026-12-06 01:02:03", String(repeating: "2", count: 50)] {
            #expect(TimeParameter.parse(bad) == nil, "\(bad)")
        }
        #expect(UsageClock.parseMonth("2026-12").map(UsageClock.iso) == "2026-12-01T00:00:00Z")
        for bad in ["2026-13", "2026-1", "12-2026", "1999-01", "2026-12-01"] { #expect(UsageClock.parseMonth(bad) == nil, "\(bad)") }
        #expect(UsageClock.iso(UsageClock.nextMonth(UsageClock.parseMonth("2026-12")!)) == "2027-01-01T00:00:00Z")
        let beforeHourEnd = UsageFlusher.delay(now: Date(timeIntervalSince1970: 3600 * 10 + 3590), interval: 60)
        #expect(beforeHourEnd < 10 && beforeHourEnd > 9.9)
        #expect(UsageFlusher.delay(now: Date(timeIntervalSince1970: 3600 * 10 + 3599.97), interval: 60) == 60)
        #expect(UsageFlusher.delay(now: Date(timeIntervalSince1970: 3600 * 10), interval: 60) == 60)
    }
}
