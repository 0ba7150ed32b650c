import ApplianceBundle

/// What a node's store holds, as the inventory script reports it.
public struct NodeInventory: Sendable, Equatable {
    public var freeBytes: Int64
    public var have: Set<SHA256Digest>
    /// Blobs being assembled and their current sizes.
    public var partial: [SHA256Digest: Int64]
    /// Bundle versions whose manifest is recorded on the node.
    public var staged: Set<String>
    /// Issue 11: the node's OS release, `ID-VERSION_ID` of `/etc/os-release` (e.g. `debian-12`); nil if unknown.
    public var os: String? = nil

    public init(
        freeBytes: Int64 = 0, have: Set<SHA256Digest> = [], partial: [SHA256Digest: Int64] = [:],
        staged: Set<String> = []
    ) {
        self.freeBytes = freeBytes
        self.have = have
        self.partial = partial
        self.staged = staged
    }

    /// Parses the script's lines; anything unexpected is an error naming the line.
    public static func parse(_ text: String) throws(ClusterError) -> NodeInventory {
        var inv = NodeInventory()
        var sawEnd = false
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ")
            guard let key = f.first else { continue }
            switch (key, f.count) {
            case ("free", 2): inv.freeBytes = Int64(f[1]) ?? 0
            case ("have", 2):
                if let d = SHA256Digest(hex: String(f[1])) { inv.have.insert(d) }
            case ("partial", 3):
                if let d = SHA256Digest(hex: String(f[1])), let n = Int64(f[2]) { inv.partial[d] = n }
            case ("staged", 2): inv.staged.insert(String(f[1]))
            case ("os", 2): inv.os = String(f[1])
            case ("end", 1): sawEnd = true
            case ("error", _): throw .node(node: "", reason: f.dropFirst().joined(separator: " "))
            default: throw .node(node: "", reason: "unexpected inventory line '\(line)'")
            }
        }
        guard sawEnd else { throw .node(node: "", reason: "inventory output ended early") }
        return inv
    }
}

/// The outcome of `finalize` for one node: blobs now in the store, and those that are not.
public struct FinalizeReport: Sendable, Equatable {
    public var ok: Set<SHA256Digest> = []
    public var bad: [SHA256Digest: String] = [:]
    /// The bundle's manifest was recorded in the same round trip (asked for, and every blob was ok).
    public var recorded = false

    public static func parse(_ text: String) throws(ClusterError) -> FinalizeReport {
        var r = FinalizeReport()
        var sawEnd = false
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ", maxSplits: 2)
            switch f.first {
            case "ok": if f.count >= 2, let d = SHA256Digest(hex: String(f[1])) { r.ok.insert(d) }
            case "bad":
                if f.count >= 2, let d = SHA256Digest(hex: String(f[1])) {
                    r.bad[d] = f.count > 2 ? String(f[2]) : "bad"
                }
            case "end": sawEnd = true
            case "recorded": r.recorded = true
            // Left to the node's step, which records it on its own and reports why it cannot.
            case "record-failed": r.recorded = false
            case "error": throw .node(node: "", reason: f.dropFirst().joined(separator: " "))
            default: throw .node(node: "", reason: "unexpected finalize line '\(line)'")
            }
        }
        guard sawEnd else { throw .node(node: "", reason: "finalize output ended early") }
        return r
    }
}

/// Which pieces go down the chain and which node keeps what: pure planning, tested without nodes.
public struct ChainPlan: Sendable, Equatable {
    /// Nodes in chain order (the first receives from the admin host).
    public var nodes: [String]
    public var pieces: [BlobPiece]
    /// Member names each node extracts.
    public var wants: [String: [String]]
    /// Bytes of blob data the stream carries.
    public var payloadBytes: Int64

    /// Bytes of the pieces each node keeps.
    public var wantedBytes: [String: Int64] {
        let lengths = Dictionary(pieces.map { ($0.memberName, $0.length) }, uniquingKeysWith: { a, _ in a })
        return wants.mapValues { $0.reduce(Int64(0)) { $0 + (lengths[$1] ?? 0) } }
    }

    /// - Parameters:
    ///   - needs: blobs each node must end up with (and does not hold yet), with sizes.
    ///   - partials: what each node already has of a blob (resume).
    ///   - locations: where each blob's bytes start in the bundle file.
    public static func make(
        order: [String], needs: [String: [SHA256Digest: Int64]], partials: [String: [SHA256Digest: Int64]],
        locations: [SHA256Digest: TarIndex.Location]
    ) -> ChainPlan {
        let chain = order.filter { !(needs[$0]?.isEmpty ?? true) }
        var blobOrder: [SHA256Digest] = []
        var sizes: [SHA256Digest: Int64] = [:]
        for n in chain {
            for (d, s) in (needs[n] ?? [:]).sorted(by: { $0.key < $1.key }) where sizes[d] == nil {
                sizes[d] = s
                blobOrder.append(d)
            }
        }
        var pieces: [BlobPiece] = []
        var wants: [String: [String]] = [:]
        var payload: Int64 = 0
        for d in blobOrder {
            guard let size = sizes[d], let loc = locations[d] else { continue }
            let holders = chain.filter { needs[$0]?[d] != nil }
            // Start where the node that has least of it stopped; the others rewrite identical bytes.
            let offset = holders.map { min(partials[$0]?[d] ?? 0, size) }.min() ?? 0
            let piece = BlobPiece(digest: d, offset: offset, size: size, fileOffset: loc.dataOffset)
            pieces.append(piece)
            payload += piece.length
            for h in holders { wants[h, default: []].append(piece.memberName) }
        }
        return ChainPlan(nodes: chain, pieces: pieces, wants: wants, payloadBytes: payload)
    }
}
