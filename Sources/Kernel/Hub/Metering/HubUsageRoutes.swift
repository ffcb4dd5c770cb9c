import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// `/v1/hub/usage` (AAL1: rollups as JSON or CSV), `/v1/hub/quotas` (AAL1: each portal's
/// quota states for the Studio) and `/v1/hub/billing` (AAL2: a portal's bill for a month).
/// Every parameter is checked; a wrong one is a 400 naming it.
struct HubUsageRoutes: Sendable {
    /// Checks the admin token and its assurance level.
    let identity: AdminIdentity
    /// The usage tables.
    let store: UsageStore
    /// This kernel's meter (its settings hold the price book).
    let meter: UsageMeter
    /// The flusher, whose last quota check the quota route answers.
    let flusher: UsageFlusher

    /// Most rows one usage answer holds.
    static let maxRows = 10_000

    /// Adds the three routes to `router`.
    func register(on router: some RouterMethods<KernelRequestContext>) {
        let identity = identity
        let store = store
        let meter = meter
        let flusher = flusher
        router.get("/v1/hub/usage") { request, _ in
            try await AdminHTTP.run {
                _ = try await identity.requireAdmin(request.headers[.authorization], aal: .aal1)
                let query = try UsageQuery(request.uri.queryParameters, accept: request.headers[.accept])
                if let portal = query.portal, !(try await store.knows(portal: portal)) { throw Self.unknownPortal(portal) }
                let rows = try await store.rows(portal: query.portal, from: query.from, to: query.to, granularity: query.granularity, limit: Self.maxRows)
                if rows.count > Self.maxRows {
                    throw UsageQuery.invalid(
                        "to", "the answer would hold more than \(Self.maxRows) rows; narrow from..to, name a portal or use a coarser granularity")
                }
                if query.csv {
                    return Response(
                        status: .ok,
                        headers: [.contentType: "text/csv; charset=utf-8", .cacheControl: "no-store", .contentDisposition: "attachment; filename=\"usage.csv\""],
                        body: .init(byteBuffer: ByteBuffer(string: UsageCSV.render(rows))))
                }
                return AdminHTTP.json(
                    UsageAnswer(
                        portal: query.portal, from: UsageClock.iso(query.from), to: UsageClock.iso(query.to), granularity: query.granularity.rawValue,
                        rows: rows))
            }
        }
        router.get("/v1/hub/quotas") { request, _ in
            try await AdminHTTP.run {
                _ = try await identity.requireAdmin(request.headers[.authorization], aal: .aal1)
                let states = flusher.quotaStates.values.flatMap { $0 }.sorted { ($0.portal, $0.metric) < ($1.portal, $1.metric) }
                return AdminHTTP.json(QuotaAnswer(tier: flusher.tier, metering: meter.isEnabled, quotas: states))
            }
        }
        router.get("/v1/hub/billing") { request, _ in
            try await AdminHTTP.run {
                _ = try await identity.requireAdmin(request.headers[.authorization], aal: .aal2)
                let parameters = request.uri.queryParameters
                for (key, _) in parameters where !["portal", "period"].contains(String(key)) {
                    throw UsageQuery.invalid(String(key), "unknown query parameter \"\(key)\"; use portal and period")
                }
                guard let portal = parameters["portal"].map(String.init), !portal.isEmpty else {
                    throw UsageQuery.invalid("portal", "portal is required: the portal to bill")
                }
                guard UsageQuery.isPortalName(portal) else {
                    throw UsageQuery.invalid("portal", "portal must be a portal name (a-z, 0-9, '-', '_', at most 63)")
                }
                let periodText = parameters["period"].map(String.init) ?? String(UsageClock.iso(Date()).prefix(7))
                guard let month = UsageClock.parseMonth(periodText) else {
                    throw UsageQuery.invalid("period", "period must be a month as YYYY-MM (e.g. 2026-12)")
                }
                guard try await store.knows(portal: portal) else { throw Self.unknownPortal(portal) }
                let tier = try await store.licenseTier()
                let totals = try await store.monthlyTotals(month: month, portal: portal)[portal] ?? [:]
                let book = meter.settings.prices[tier] ?? PriceBook()
                return AdminHTTP.json(BillingSummary.compute(portal: portal, period: periodText, tier: tier, book: book, totals: totals))
            }
        }
    }

    /// The 404 for a portal neither existing nor on record.
    static func unknownPortal(_ portal: String) -> GatewayError {
        GatewayError(
            status: 404, code: "portal_not_found", message: "portal \"\(portal)\" does not exist and has no usage on record", hint: "GET /v1/hub/portals lists the portals")
    }

    /// `GET /v1/hub/usage` as JSON.
    struct UsageAnswer: Encodable {
        /// The portal asked for (null: all).
        var portal: String?
        /// The range's start, rounded down to its period.
        var from: String
        /// The range's end (exclusive).
        var to: String
        /// `hour`, `day` or `month`.
        var granularity: String
        /// The rows by period, portal, metric and dimension.
        var rows: [UsageStore.Row]

        /// Encodes `portal` as null when absent.
        func encode(to encoder: Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(portal, forKey: .portal)
            try container.encode(from, forKey: .from)
            try container.encode(to, forKey: .to)
            try container.encode(granularity, forKey: .granularity)
            try container.encode(rows, forKey: .rows)
        }

        /// JSON names.
        enum CodingKeys: String, CodingKey {
            case portal, from, to, granularity, rows
        }
    }

    /// `GET /v1/hub/quotas`.
    struct QuotaAnswer: Encodable {
        /// The license tier the quotas were taken from.
        var tier: String
        /// Whether this kernel meters (`[metering] enabled`).
        var metering: Bool
        /// Every portal's quotas, by portal and metric.
        var quotas: [QuotaState]
    }
}
