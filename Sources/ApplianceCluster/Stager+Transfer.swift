import ApplianceBundle
import ApplianceSSH
import Foundation

extension Stager {
    /// What a chain transfer reports, and what must be removed after it (`cleanup(setUp, run: run)`).
    struct TransferResult {
        var failures: [String: String] = [:]
        var run = ""
        var setUp: [StagingNode] = []
    }

    /// One chain transfer: sets up the relay and temporary peer credentials and streams the pieces into
    /// the first node. Relay failures are reported per node. On success the caller removes what was set up
    /// (alongside the nodes' final checks); on failure it is removed here.
    func transfer(_ plan: ChainPlan, _ chain: [StagingNode]) async throws -> TransferResult {
        guard let head = chain.first, !plan.pieces.isEmpty else { return TransferResult() }
        let run = String(UInt64.random(in: 0..<UInt64.max), radix: 36)
        let keys = try PeerKey.generate(comment: "appliance-staging-\(run)")
        defer { keys.remove() }

        // Peers trust exactly the host key this admin host verified for each node.
        let hostKeys = await forEachNode(chain) { stager, node in
            guard let key = try await stager.pool.connection(for: node.endpoint).hostKey else {
                throw ClusterError.node(node: node.name, reason: "its host key type is not supported for relaying")
            }
            return key.line
        }
        var failures: [String: String] = [:]
        var setUp: [StagingNode] = []
        let clock = ContinuousClock()
        let started = clock.now
        do {
            var prepared: [String: (files: [(String, [UInt8], UInt32)], authorizedLine: String?)] = [:]
            for (i, node) in chain.enumerated() {
                let next = i + 1 < chain.count ? chain[i + 1] : nil
                var files: [(String, [UInt8], UInt32)] = [
                    ("relay-\(run).sh", Array(NodeScripts.relay.utf8), 0o700),
                    ("keep-\(run).sh", Array(NodeScripts.keep.utf8), 0o700),
                    ("want-\(run)", Array(((plan.wants[node.name] ?? []).joined(separator: "\n") + "\n").utf8), 0o600),
                ]
                if let next {
                    guard case .success(let text)? = hostKeys[next.name] else {
                        throw ClusterError.node(node: next.name, reason: "cannot read its SSH host keys for the relay")
                    }
                    let host =
                        next.endpoint.port == 22 ? next.endpoint.host : "[\(next.endpoint.host)]:\(next.endpoint.port)"
                    let known =
                        text.split(separator: "\n").map { line -> String in
                            let f = line.split(separator: " ")
                            return f.count >= 2 ? "\(host) \(f[0]) \(f[1])" : ""
                        }.filter { !$0.isEmpty }.joined(separator: "\n") + "\n"
                    files.append(("known-hosts-\(run)", Array(known.utf8), 0o600))
                    files.append(("peer-key-\(run)", keys.privateKey, 0o600))
                }
                // Only the previous node of the chain may log in with the key, and only to relay.
                let authLine: String? =
                    i == 0
                    ? nil
                    : "from=\"\(chain[i - 1].endpoint.host)\",restrict \(keys.publicKey) appliance-staging-\(run)"
                prepared[node.name] = (files, authLine)
            }
            // Every node is set up at once; the first failure (in chain order) stops the transfer. In the same
            // round trip each node opens its connection to the next (see `setup`), so the chain is ready in
            // the time of one login instead of one per hop, and of one round trip instead of two.
            setUp = chain
            let work = prepared
            let nextOf = Dictionary(uniqueKeysWithValues: zip(chain.map(\.name), chain.dropFirst()))
            let results = await forEachNode(chain) { stager, node in
                guard let p = work[node.name] else { return }
                try await stager.setup(
                    node, run: run, files: p.files, authorizedLine: p.authorizedLine, next: nextOf[node.name])
            }
            for node in chain { if case .failure(let e)? = results[node.name] { throw e } }
            logger.info("relay set up on \(chain.count) nodes in \(Self.seconds(clock.now - started))")

            // The stream: headers and data read on a dedicated thread, paced when a cap is set.
            let progress = self.progress
            let sentBefore = progress.withLock { $0.sent }
            var keepers: [String: [String]] = [:]
            for (node, members) in plan.wants { for m in members { keepers[m, default: []].append(node) } }
            let wantedBy = keepers
            let stream = try PieceStream(bundlePath: bundle.archive.path, pieces: plan.pieces) { piece, n in
                progress.withLock { p in
                    p.sent += n
                    for node in wantedBy[piece.memberName] ?? [] { p.nodes[node]?.done += n }
                }
            }
            let pump = ChunkPump { try stream.next() }
            defer { pump.cancel() }
            let hops = chain.dropFirst().map {
                "\(shellQuote($0.endpoint.host)) \($0.endpoint.port) \(shellQuote($0.endpoint.user)) \(shellQuote(store(of: $0)))"
            }
            let prefix = head.endpoint.sudo && head.endpoint.user != "root" ? "sudo -n " : ""
            let command =
                "\(env(head)) PEER_PREFIX=\(shellQuote(prefix)) sh \(shellQuote(store(of: head) + "/.staging/relay-\(run).sh")) \(run) \(hops.joined(separator: " "))"
            let stderr = Locked<[UInt8]>([])
            let conn = try await pool.connection(for: head.endpoint)
            let result = try await conn.exec(
                command, stdin: .stream(pump.stream(bytesPerSecond: bytesPerSecond)), label: "relay into \(head.name)",
                onStdout: { _ in }, onStderr: { chunk in stderr.withLock { $0 += chunk } })
            let streamed = progress.withLock { $0.sent } - sentBefore
            addBytesSent(streamed)
            let took = clock.now - started
            logger.info(
                "streamed \(streamed) bytes through \(chain.count) nodes in \(Self.seconds(took)) (\(Self.rate(streamed, took)))"
            )
            let text = String(decoding: stderr.withLock { $0 }, as: UTF8.self)
            for line in text.split(separator: "\n") where line.hasPrefix("relay-failed ") {
                let f = line.split(separator: " ", maxSplits: 2)
                guard f.count >= 2 else { continue }
                let who = String(f[1])
                let node = chain.first { $0.name == who || $0.endpoint.host == who }?.name ?? who
                failures[node] = f.count > 2 ? String(f[2]) : "relay failed"
            }
            if !result.succeeded {
                logger.warning("relay chain ended with \(result): \(text.suffix(500))")
                if failures.isEmpty { failures[head.name] = "relay \(result)" }
            }
        } catch {
            await cleanup(setUp, run: run)
            // A chain that could not even start: the first node is the one to blame unless a node was named.
            if let e = error as? SSHError, let host = e.host {
                let node = chain.first { $0.endpoint.host == host || $0.endpoint.description.contains(host) }
                failures[node?.name ?? head.name] = e.message
                return TransferResult(failures: failures)
            }
            throw error
        }
        return TransferResult(failures: failures, run: run, setUp: setUp)
    }

    func addBytesSent(_ n: Int64) { bytesSent += n }

    /// Shell text (with `dir` and `run` set) that opens the node's SSH connection to the next node of the
    /// chain as a multiplexing master (.staging/ctl-RUN) that the relay then uses. The next node is set up
    /// at the same moment, so a login refused because its key is not there yet is tried again for about
    /// five seconds (an unreachable node costs one connect timeout, as before). Best effort: it always
    /// succeeds, and without the master the relay logs in itself.
    static func connectPeerScript(to next: StagingNode) -> String {
        """
        ; deadline=$(($(date +%s) + 5)); until ssh -M -S "$dir/ctl-$run" -fN \(NodeScripts.peerSSHOptions) \
        -p \(next.endpoint.port) \(shellQuote(next.endpoint.user + "@" + next.endpoint.host)) \
        </dev/null >/dev/null 2>"$dir/ctl-$run.err"; do \
        [ "$(date +%s)" -ge "$deadline" ] && break; sleep 0.2; done; \
        [ -S "$dir/ctl-$run" ] || echo "no relay connection to \(next.name) ahead: $(tail -n 1 "$dir/ctl-$run.err")" >&2; true
        """
    }

    static func seconds(_ d: Duration) -> String {
        let c = d.components
        return String(format: "%.2f s", Double(c.seconds) + Double(c.attoseconds) / 1e18)
    }

    static func rate(_ bytes: Int64, _ d: Duration) -> String {
        let c = d.components
        let s = max(Double(c.seconds) + Double(c.attoseconds) / 1e18, 0.001)
        return String(format: "%.1f MB/s", Double(bytes) / s / 1e6)
    }

    /// Writes a run's relay files on a node and, for every node after the first, the authorized_keys line
    /// that lets the previous node in; with `next`, then opens the connection to the next node ahead.
    func setup(
        _ node: StagingNode, run: String, files: [(String, [UInt8], UInt32)], authorizedLine: String?,
        next: StagingNode? = nil
    ) async throws {
        var tar: [UInt8] = []
        for (name, data, _) in files {
            tar += PieceStream.header(name: name, size: Int64(data.count))
            tar += data
            tar += [UInt8](repeating: 0, count: (512 - data.count % 512) % 512)
        }
        tar += [UInt8](repeating: 0, count: 1024)
        let chmods = files.map { "chmod \(String($0.2, radix: 8)) \"$dir\"/\(shellQuote($0.0))" }.joined(
            separator: "; ")
        let user = node.endpoint.user
        var cmd = """
            set -e; \(env(node)); dir="$STORE/.staging"; mkdir -p "$dir"; chmod 700 "$dir"; \
            tar -x -f - -C "$dir" --no-same-owner; \(chmods)
            """
        if let authorizedLine {
            cmd += """
                ; \(node.authorizedKeysAssignment); mkdir -p "$(dirname "$f")"; \
                if [ ! -e "$f" ]; then : >"$f"; chmod 600 "$f"; chown \(shellQuote(user)) "$(dirname "$f")" "$f"; fi; \
                printf '%s\\n' \(shellQuote(authorizedLine)) >>"$f"
                """
        }
        if let next { cmd += "; run=\(run)" + Self.connectPeerScript(to: next) }
        let out = try await pool.run(
            node.endpoint, cmd, stdin: .bytes(tar), timeout: .seconds(60), label: "relay setup on \(node.name)")
        guard out.exit.succeeded else {
            throw ClusterError.node(node: node.name, reason: "relay setup failed: \(out.stderrText)")
        }
        if next != nil, !out.stderrText.isEmpty {
            logger.warning("\(node.name): \(out.stderrText.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }

    /// Removes a run's relay files and authorized_keys lines; with `run == nil`, those of every earlier run
    /// (a crashed admin host leaves them behind).
    func cleanup(_ list: [StagingNode], run: String?) async {
        _ = await forEachNode(list) { stager, node in
            let cmd = "\(stager.env(node)); " + Self.cleanupScript(node, run: run)
            _ = try await stager.pool.run(
                node.endpoint, cmd, timeout: .seconds(30), label: "relay cleanup on \(node.name)")
        }
    }

    /// Shell text (with `STORE` set) that removes a run's relay files, connection and authorized_keys
    /// lines; with `run == nil`, those of every earlier run.
    static func cleanupScript(_ node: StagingNode, run: String?) -> String {
        let tag = run.map { "appliance-staging-\($0)" } ?? "appliance-staging-"
        let files =
            run.map {
                "relay-\($0).sh keep-\($0).sh want-\($0) known-hosts-\($0) peer-key-\($0) tar-\($0).err fifo-\($0)-* ctl-\($0) ctl-\($0).err keeping-\($0)-* keep-failed-\($0)-*"
            }
            ?? "*"
        let sockets = run.map { "ctl-\($0)" } ?? "ctl-*"
        // First the run's own processes: a relay whose upstream node died may still be reading (its node
        // learns of the dead peer only when the connection times out) and would write its failure marks
        // after the files were removed. Found by their command lines, which name this store's scripts.
        let id = run ?? ""
        return """
            dir="$STORE/.staging"; \
            pids=$(printf '%s\\n' "$dir/relay-\(id)" "$dir/keep-\(id)" | grep -lsF -f - /proc/[0-9]*/cmdline \
            | sed -n 's|^/proc/\\([0-9]*\\)/cmdline$|\\1|p' | grep -vx "$$"); \
            if [ -n "$pids" ]; then kill $pids 2>/dev/null; i=0; \
            while [ $i -lt 30 ]; do alive=; for q in $pids; do [ -d /proc/$q ] && alive=1; done; \
            [ -z "$alive" ] && break; sleep 0.1; i=$((i + 1)); done; kill -9 $pids 2>/dev/null; fi; \
            for s in "$dir"/\(sockets); do [ -S "$s" ] && ssh -S "$s" -O exit appliance-peer >/dev/null 2>&1; done; \
            ( cd "$dir" 2>/dev/null && rm -f \(files) ); \
            \(node.authorizedKeysAssignment); if [ -f "$f" ] && grep -q \(shellQuote(tag)) "$f"; then \
            grep -v \(shellQuote(tag)) "$f" >"$f.appliance-tmp" || true; cat "$f.appliance-tmp" >"$f"; rm -f "$f.appliance-tmp"; fi

            """
    }

    /// Removes relay leftovers of crashed runs from every reachable node.
    public func removeLeftovers() async {
        await cleanup(nodes, run: nil)
    }
}

/// An ephemeral ed25519 key pair for node-to-node relay logins, made with ssh-keygen in a private
/// temporary directory and removed after the run.
struct PeerKey {
    let directory: String
    let privateKey: [UInt8]
    let publicKey: String

    static func generate(comment: String) throws -> PeerKey {
        let dir = NSTemporaryDirectory() + "appliance-peer-" + UUID().uuidString
        guard mkdir(dir, 0o700) == 0 else { throw ClusterError.io(path: dir, reason: String(cString: strerror(errno))) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/ssh-keygen")
        p.arguments = ["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", dir + "/key"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        do {
            try p.run()
        } catch {
            try? FileManager.default.removeItem(atPath: dir)
            throw ClusterError.io(path: "/usr/bin/ssh-keygen", reason: "cannot run ssh-keygen (install openssh-client)")
        }
        p.waitUntilExit()
        guard p.terminationStatus == 0, let priv = FileManager.default.contents(atPath: dir + "/key"),
            let pub = FileManager.default.contents(atPath: dir + "/key.pub")
        else {
            try? FileManager.default.removeItem(atPath: dir)
            throw ClusterError.io(path: dir, reason: "ssh-keygen failed")
        }
        let fields = String(decoding: pub, as: UTF8.self).split(separator: " ")
        return PeerKey(directory: dir, privateKey: Array(priv), publicKey: fields.prefix(2).joined(separator: " "))
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }
}
