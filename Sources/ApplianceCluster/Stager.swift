import ApplianceBundle
import ApplianceModel
import ApplianceSSH
import Foundation
import Logging

/// What a staging run has sent so far: in all (`sent` of `planned` payload bytes from this host) and for
/// each node (bytes of the pieces it keeps, as they leave this host; the chain delivers them moments later).
public struct StagingProgress: Sendable, Equatable {
    public struct Node: Sendable, Equatable {
        public var done: Int64 = 0
        public var total: Int64 = 0
    }
    public var sent: Int64 = 0
    public var planned: Int64 = 0
    public var nodes: [String: Node] = [:]
}

/// A node staging talks to: its name, how to log in, its roles, and the address peers use to reach it.
public struct StagingNode: Sendable, Equatable {
    public var name: String
    public var endpoint: SSHEndpoint
    public var roles: [NodeRole]
    /// The node's store, when it differs from the stager's default (tests run several "nodes" on one host).
    public var store: String?
    /// Where the node's sshd reads the login user's keys, when not `~USER/.ssh/authorized_keys`.
    public var authorizedKeysFile: String?

    public init(
        name: String, endpoint: SSHEndpoint, roles: [NodeRole], store: String? = nil, authorizedKeysFile: String? = nil
    ) {
        self.name = name
        self.endpoint = endpoint
        self.roles = roles
        self.store = store
        self.authorizedKeysFile = authorizedKeysFile
    }

    /// Shell text that sets `f` to the authorized_keys file of the login user.
    var authorizedKeysAssignment: String {
        if let authorizedKeysFile { return "f=\(shellQuote(authorizedKeysFile))" }
        return "f=\"$(getent passwd \(shellQuote(endpoint.user)) | cut -d: -f6)/.ssh/authorized_keys\""
    }
}

/// Stages a verified bundle onto nodes' content-addressed stores.
///
/// How: ask every node what it holds; plan one chain through the nodes that miss something; stream the
/// missing byte ranges (a tar of `<digest>.<offset>` pieces) from the admin host into the first node, where a
/// relay keeps what that node needs and passes the whole stream on to the next node over SSH with a
/// temporary key. Each link carries the data once, so N nodes take about the time of one. Nodes then
/// check every digest before a blob becomes visible in the store. A node that fails (unreachable, disk full,
/// dies mid-transfer) is reported and left out of the next round; the others carry on. Temporary keys,
/// authorized_keys lines, scripts and FIFOs are removed when the transfer ends, and any left by a
/// crashed run are removed at the start of the next.
public actor Stager {
    public let bundle: VerifiedBundle
    public let nodes: [StagingNode]
    public let pool: SSHPool
    public let store: String
    public let bytesPerSecond: Int64?
    let logger: Logger

    private var locations: [SHA256Digest: TarIndex.Location] = [:]
    private var inventories: [String: NodeInventory] = [:]
    /// This round's inventory of each node, asked once and shared by whoever asks (the plan's checks and the
    /// transfer); dropped after every transfer, when stores have changed.
    private var asking: [String: Task<NodeInventory, Error>] = [:]
    /// Nodes whose relay leftovers of earlier (crashed) runs this stager has removed.
    private var swept: Set<String> = []
    /// Nodes whose manifest this run recorded together with their final check.
    public private(set) var recordedNodes: Set<String> = []
    /// Connections being opened while the caller verifies the bundle (see `connectAhead`).
    private let warming: Task<Void, Never>?
    public private(set) var failures: [String: ClusterError.NodeFailure] = [:]
    /// Nodes whose store holds every blob they need (checked on the node) after the last `stage()`.
    public private(set) var stagedNodes: Set<String> = []
    /// Payload bytes sent by the admin host in this run.
    public internal(set) var bytesSent: Int64 = 0
    /// Live progress of this run, updated from the sending thread; read it at any time.
    public nonisolated let progress = Locked(StagingProgress())

    /// Where nodes keep content-addressed blobs unless told otherwise.
    public static let defaultStore = "/var/lib/appliance/store"

    public init(
        bundle: VerifiedBundle, nodes: [StagingNode], pool: SSHPool, store: String = defaultStore,
        bytesPerSecond: Int64? = nil, connecting: Task<Void, Never>? = nil, logger: Logger
    ) {
        self.warming = connecting
        self.bundle = bundle
        self.nodes = nodes
        self.pool = pool
        self.store = store
        self.bytesPerSecond = bytesPerSecond
        self.logger = logger
    }

    /// Blobs a node with these roles must hold, with sizes.
    public func required(for node: StagingNode) -> [SHA256Digest: Int64] {
        var out: [SHA256Digest: Int64] = [:]
        // Issue 11: by OS too, once the node's inventory said which (until then, whatever its roles need).
        let os = inventories[node.name]?.os
        for (_, a) in bundle.manifest.allArtifacts where a.applies(to: node.roles, os: os) {
            for b in a.allBlobs { out[b.digest] = b.size }  // an image: manifest, config and every layer
        }
        return out
    }

    nonisolated func store(of node: StagingNode) -> String { node.store ?? store }

    nonisolated func env(_ node: StagingNode) -> String { "STORE=\(shellQuote(store(of: node)))" }

    /// Runs a node script; stdout is parsed by the caller.
    func script(_ node: StagingNode, _ body: String, args: [String] = [], stdin: SSHInput = .none, label: String)
        async throws -> String
    {
        let command =
            "\(env(node)) sh -c \(shellQuote(body)) appliance-\(label) \(args.map(shellQuote).joined(separator: " "))"
        let out = try await pool.run(
            node.endpoint, command, stdin: stdin, timeout: .seconds(600), label: "\(label) on \(node.name)")
        guard out.exit.succeeded else {
            let err = out.stderrText.split(separator: "\n").last.map(String.init) ?? out.exit.description
            let detail = out.stdoutText.split(separator: "\n").first { $0.hasPrefix("error ") }.map(String.init)
            throw ClusterError.node(node: node.name, reason: "\(label) failed: \(detail ?? err)")
        }
        return out.stdoutText
    }

    /// Opens the SSH connections to `nodes` in the background, so that logins (the slow part of the first
    /// round trip) overlap whatever the caller does meanwhile, typically verifying the bundle. Read-only on
    /// the nodes: nothing is asked or changed before the operation holds its locks. Failures are left for
    /// the first real use of the connection to report. Pass the task to `init(connecting:)`, which waits
    /// for it before the first inventory.
    public static func connectAhead(_ nodes: [StagingNode], pool: SSHPool) -> Task<Void, Never> {
        Task {
            await withTaskGroup(of: Void.self) { group in
                for node in nodes { group.addTask { _ = try? await pool.connection(for: node.endpoint) } }
            }
        }
    }

    /// What one node holds. Asked once per round whoever asks (the plan's node checks and the transfer run
    /// at the same time and share the answer); the first time this stager asks a node, the same round trip
    /// first removes relay files and keys that an earlier run left behind (a crashed admin host, a node that
    /// was down at cleanup). `sweep` is kept for callers that want that said explicitly; it happens once per
    /// node either way.
    public func inventory(_ node: StagingNode, sweep: Bool = false) async throws -> NodeInventory {
        if let pending = asking[node.name] { return try await pending.value }
        let body = (swept.contains(node.name) ? "" : Self.cleanupScript(node, run: nil)) + NodeScripts.inventory
        swept.insert(node.name)
        let warming = self.warming
        let task = Task {
            if let warming { await warming.value }
            do {
                return try NodeInventory.parse(try await self.script(node, body, label: "inventory"))
            } catch let e as ClusterError {
                if case .node(_, let reason) = e { throw ClusterError.node(node: node.name, reason: reason) }
                throw e
            }
        }
        asking[node.name] = task
        do {
            let inv = try await task.value
            inventories[node.name] = inv
            return inv
        } catch {
            // A failed answer is not kept: the next ask tries again.
            if asking[node.name] == task { asking[node.name] = nil }
            throw error
        }
    }

    /// Everything: inventory, rounds of chain transfers, finalize. Returns the nodes now fully staged.
    @discardableResult
    public func stage(maxRounds: Int = 3) async throws -> [String] {
        locations = try bundle.archive.blobLocations()
        var staged: [String] = []
        var pending = nodes
        for round in 1...maxRounds {
            // 1. Inventory (in parallel); unreachable nodes fail here.
            let asked = ContinuousClock.now
            // The first round also sweeps relay leftovers of crashed runs, in the same round trip.
            let sweep = round == 1
            let results = await forEachNode(pending) { stager, node in try await stager.inventory(node, sweep: sweep) }
            logger.info("inventory of \(pending.count) nodes in \(Self.seconds(ContinuousClock.now - asked))")
            var needs: [String: [SHA256Digest: Int64]] = [:]
            var partials: [String: [SHA256Digest: Int64]] = [:]
            var candidates: [StagingNode] = []
            for node in pending {
                guard case .success(let inv) = results[node.name] else {
                    if case .failure(let e) = results[node.name] { fail(node.name, e) }
                    continue
                }
                let missing = required(for: node).filter { !inv.have.contains($0.key) }
                let stillToReceive = missing.reduce(Int64(0)) {
                    $0 + $1.value - min(inv.partial[$1.key] ?? 0, $1.value)
                }
                if missing.isEmpty {
                    staged.append(node.name)
                    continue
                }
                // Room for what is still to come; the profile's extra headroom is preflight's check (hw.staging-space).
                if inv.freeBytes < stillToReceive {
                    fail(
                        node.name,
                        ClusterError.node(
                            node: node.name,
                            reason:
                                "disk full: needs \(stillToReceive) bytes in \(store(of: node)), \(inv.freeBytes) free")
                    )
                    continue
                }
                needs[node.name] = missing
                partials[node.name] = inv.partial
                candidates.append(node)
            }
            if candidates.isEmpty { break }
            let plan = ChainPlan.make(
                order: candidates.map(\.name), needs: needs, partials: partials, locations: locations)
            logger.info(
                "round \(round): sending \(plan.payloadBytes) bytes through \(plan.nodes.joined(separator: " -> "))")
            let chainNodes = plan.nodes.compactMap { n in candidates.first { $0.name == n } }
            progress.withLock { p in
                p.planned += plan.payloadBytes
                for (name, total) in plan.wantedBytes { p.nodes[name, default: .init()].total += total }
            }
            let sent = try await transfer(plan, chainNodes)
            asking = [:]
            let relayFailures = sent.failures
            // 2. Finalize every chain node: digests checked on the node, blobs made visible.
            let chainNeeds = needs
            let finalizing = ContinuousClock.now
            // The relay's files and keys are removed while the nodes check their blobs.
            async let cleaned: Void = cleanup(sent.setUp, run: sent.run)
            // A node whose every blob checks out records the bundle's manifest in the same round trip.
            let finals = await forEachNode(chainNodes) { stager, node in
                try await stager.finalize(node, chainNeeds[node.name] ?? [:], record: true)
            }
            await cleaned
            logger.info(
                "blobs checked and made visible on \(chainNodes.count) nodes in \(Self.seconds(ContinuousClock.now - finalizing))"
            )
            var next: [StagingNode] = []
            for node in chainNodes {
                switch finals[node.name] {
                case .success(let report)?:
                    if report.bad.isEmpty {
                        staged.append(node.name)
                        if report.recorded { recordedNodes.insert(node.name) }
                    } else if report.bad.values.contains(where: { $0.hasPrefix("digest") }) {
                        fail(
                            node.name,
                            ClusterError.node(
                                node: node.name, reason: "a blob arrived damaged (digest mismatch); it was discarded"))
                        next.append(node)
                    } else {
                        if let reason = relayFailures[node.name] {
                            failures[node.name] = .init(node: node.name, reason: reason, status: .remoteCommandFailed)
                        }
                        next.append(node)
                    }
                case .failure(let e)?: fail(node.name, e)
                case nil: break
                }
            }
            pending = next
            if pending.isEmpty { break }
        }
        for node in pending where failures[node.name] == nil {
            failures[node.name] = .init(
                node: node.name, reason: "still missing blobs after \(maxRounds) rounds", status: .remoteCommandFailed)
        }
        for n in staged { failures[n] = nil }
        stagedNodes.formUnion(staged)
        return staged
    }

    private func fail(_ node: String, _ error: Error) {
        let f = Self.failure(node: node, error)
        failures[node] = f
    }

    static func failure(node: String, _ error: Error) -> ClusterError.NodeFailure {
        if let e = error as? SSHError {
            let status: ExitStatus =
                switch e.category {
                case .unreachable: .unreachable
                case .authentication, .hostKey: .authentication
                case .remote: .remoteCommandFailed
                case .cancelled: .interrupted
                case .internal: .internal
                }
            return .init(node: node, reason: e.message, status: status)
        }
        if let e = error as? ClusterError, case .node(_, let reason) = e {
            return .init(node: node, reason: reason, status: .remoteCommandFailed)
        }
        return .init(node: node, reason: "\(error)", status: .internal)
    }

    /// Runs `body` for every node with bounded parallelism; results by node name.
    func forEachNode<T: Sendable>(
        _ list: [StagingNode], limit: Int = 32, _ body: @escaping @Sendable (Stager, StagingNode) async throws -> T
    ) async -> [String: Result<T, Error>] {
        await withTaskGroup(of: (String, Result<T, Error>).self) { group in
            var out: [String: Result<T, Error>] = [:]
            var iterator = list.makeIterator()
            var running = 0
            func launch() {
                guard let n = iterator.next() else { return }
                running += 1
                group.addTask { [self] in
                    do { return (n.name, .success(try await body(self, n))) } catch { return (n.name, .failure(error)) }
                }
            }
            for _ in 0..<max(1, limit) { launch() }
            while running > 0, let (name, r) = await group.next() {
                running -= 1
                out[name] = r
                launch()
            }
            return out
        }
    }

    /// Checks and makes visible the blobs `need` lists on a node. With `record`, when every one of them
    /// checks out, the node also records the bundle's manifest and signature in the same round trip (the
    /// blobs it already held were in the store before; the inventory said so).
    func finalize(_ node: StagingNode, _ need: [SHA256Digest: Int64], record: Bool = false) async throws
        -> FinalizeReport
    {
        var input = Array(need.sorted { $0.key < $1.key }.map { "\($0.key.hex) \($0.value)\n" }.joined().utf8)
        var args: [String] = []
        if record {
            let manifest = Array(bundle.archive.manifestData)
            let sig = bundle.archive.signatureData.map(Array.init) ?? []
            input += Array("end\n".utf8) + manifest + sig
            args = ["\(store(of: node))/bundles/\(bundle.manifest.version)", String(manifest.count), String(sig.count)]
        }
        let text = try await script(node, NodeScripts.finalize, args: args, stdin: .bytes(input), label: "finalize")
        return try FinalizeReport.parse(text)
    }

    /// Records the bundle's manifest and signature on a node (after all its blobs are in the store); a no-op
    /// where this run already recorded it with the node's final check.
    public func record(_ node: StagingNode) async throws {
        if recordedNodes.contains(node.name) { return }
        let dir = "\(store(of: node))/bundles/\(bundle.manifest.version)"
        var payload = Array(bundle.archive.manifestData)
        let sig = bundle.archive.signatureData.map(Array.init) ?? []
        let cmd = """
            set -e; mkdir -p \(shellQuote(dir)); head -c \(payload.count) > \(shellQuote(dir + "/manifest.yaml.tmp")); \
            cat > \(shellQuote(dir + "/manifest.yaml.sig.tmp")); \
            mv \(shellQuote(dir + "/manifest.yaml.sig.tmp")) \(shellQuote(dir + "/manifest.yaml.sig")); \
            mv \(shellQuote(dir + "/manifest.yaml.tmp")) \(shellQuote(dir + "/manifest.yaml"))
            """
        payload += sig
        let out = try await pool.run(
            node.endpoint, cmd, stdin: .bytes(payload), timeout: .seconds(60), label: "record on \(node.name)")
        guard out.exit.succeeded else {
            throw ClusterError.node(node: node.name, reason: "recording the manifest failed: \(out.stderrText)")
        }
    }
}
