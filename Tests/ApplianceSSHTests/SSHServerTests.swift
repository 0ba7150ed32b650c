import ApplianceTestSupport
import Foundation
import Testing

@testable import ApplianceSSH

#if canImport(Glibc)
    import Glibc
#endif

/// Real sshd on loopback. Each test starts its own server(s) and reuses one connection inside.
@Suite(.serialized, .tags(.sshd), .enabled(if: TestSSHServer.available, "needs root and /usr/sbin/sshd"))
struct SSHServerTests {

    @Test func execSeparatesStreamsAndReportsStatusAndSignal() async throws {
        try await TestSSHServer.with { server in
            let connection = try await server.connect()
            defer { Task { await connection.close() } }

            let both = try await connection.run("echo out; echo err >&2; exit 3")
            #expect(both.stdoutText == "out\n")
            #expect(both.stderrText == "err\n")
            #expect(both.exit == ExitResult(status: 3, signal: nil))

            let killed = try await connection.run("kill -TERM $$")
            #expect(killed.exit.signal == "TERM")
            #expect(killed.exit.status == nil)
            #expect(!killed.exit.succeeded)

            let input = try await connection.run("tr a-z A-Z", stdin: .bytes(Array("hello\n".utf8)))
            #expect(input.stdoutText == "HELLO\n")

            // Binary round trip: every byte value, 4 MiB, through cat.
            var binary = [UInt8](repeating: 0, count: 4 << 20)
            for i in binary.indices { binary[i] = UInt8(truncatingIfNeeded: i &* 7 &+ i >> 11) }
            let echoed = try await connection.run("cat", stdin: .bytes(binary))
            #expect(echoed.stdout == binary)

            // Interleaved streams with a lot of both: neither side blocks the other.
            let mixed = try await connection.run(
                "i=0; while [ $i -lt 2000 ]; do echo o$i; echo e$i >&2; i=$((i+1)); done")
            #expect(mixed.stdoutText.split(separator: "\n").count == 2000)
            let errLines = mixed.stderrText.split(separator: "\n")
            #expect(errLines.count == 2000, "unexpected stderr: \(errLines.filter { !$0.hasPrefix("e") }.prefix(5))")

            let truncated = try await connection.run("head -c 100000 /dev/zero", limit: 1000)
            #expect(truncated.stdout.count == 1000 && truncated.stdoutTruncated)

            await #expect(throws: SSHError.self) { try await connection.runChecked("false") }
        }
    }

    @Test func largeOutputStreamsWithoutAccumulating() async throws {
        try await TestSSHServer.with { server in
            let connection = try await server.connect()
            defer { Task { await connection.close() } }
            let total = 200_000_000
            let before = Self.maxRSSMiB()
            let start = ContinuousClock.now
            var count = 0
            var chunks = 0
            let exit = try await connection.exec(
                "head -c \(total) /dev/zero",
                onStdout: {
                    count += $0.count; chunks += 1
                }, onStderr: { _ in })
            let elapsed = (ContinuousClock.now - start).seconds
            #expect(exit.succeeded)
            #expect(count == total)
            let grown = Self.maxRSSMiB() - before
            print(
                "download stream: \(total / 1_000_000) MB in \(String(format: "%.2f", elapsed)) s = \(String(format: "%.0f", Double(total) / 1e6 / elapsed)) MB/s, \(chunks) chunks, max RSS grew \(grown) MiB"
            )
            #expect(grown < 100, "output must not accumulate in memory")
        }
    }

    @Test func unknownHostIsRefusedThenRecordedWithTrustNew() async throws {
        try await TestSSHServer.with { server in
            let knownHosts = server.directory + "/client/known_hosts"
            let strict = HostKeyPolicy(knownHostsFile: knownHosts)
            let refused = await #expect(throws: SSHError.self) {
                try await SSHConnection.connect(to: server.endpoint(), policy: strict)
            }
            #expect(
                refused == .hostKeyUnknown(host: "127.0.0.1:\(server.port)", fingerprint: server.hostKeyFingerprint))
            #expect(refused?.category == .hostKey)

            let trusting = HostKeyPolicy(knownHostsFile: knownHosts, trustNewHosts: true)
            let first = try await SSHConnection.connect(to: server.endpoint(), policy: trusting)
            await first.close()
            let recorded = try String(contentsOfFile: knownHosts, encoding: .utf8)
            let keyPart = server.hostPublicKeyLine.split(separator: " ").prefix(2).joined(separator: " ")
            #expect(recorded == "[127.0.0.1]:\(server.port) \(keyPart)\n")

            // Now known: strict policy accepts it, and OpenSSH agrees with the file's format.
            let again = try await SSHConnection.connect(to: server.endpoint(), policy: strict)
            #expect(try await again.run("echo ok").stdoutText == "ok\n")
            await again.close()
            let found = try TestSSHServer.shell("ssh-keygen -F '[127.0.0.1]:\(server.port)' -f '\(knownHosts)'")
            #expect(found.contains("ssh-ed25519"))
        }
    }

    @Test func changedHostKeyIsAlwaysRefusedWithBothFingerprints() async throws {
        try await TestSSHServer.with { server in
            let otherKey = server.directory + "/other_host"
            try TestSSHServer.keygen(otherKey)
            let otherFingerprint = try TestSSHServer.fingerprint(ofPublicKeyFile: otherKey + ".pub")
            let otherLine = try String(contentsOfFile: otherKey + ".pub", encoding: .utf8)
            let keyPart = otherLine.split(separator: " ").prefix(2).joined(separator: " ")
            let knownHosts = server.directory + "/known_hosts"
            try "# comment\n[127.0.0.1]:\(server.port) \(keyPart)\n".write(
                toFile: knownHosts, atomically: true, encoding: .utf8)

            for trust in [false, true] {
                let policy = HostKeyPolicy(knownHostsFile: knownHosts, trustNewHosts: trust)
                let error = await #expect(throws: SSHError.self) {
                    try await SSHConnection.connect(to: server.endpoint(), policy: policy)
                }
                #expect(
                    error
                        == .hostKeyChanged(
                            host: "127.0.0.1:\(server.port)", expected: [otherFingerprint],
                            presented: server.hostKeyFingerprint))
                #expect(error?.message.contains(otherFingerprint) == true)
                #expect(error?.message.contains(server.hostKeyFingerprint) == true)
            }
            // The file was not touched.
            #expect(try String(contentsOfFile: knownHosts, encoding: .utf8).split(separator: "\n").count == 2)

            // A wrong pin is a changed key too.
            let pinError = await #expect(throws: SSHError.self) {
                try await SSHConnection.connect(
                    to: server.endpoint(), policy: HostKeyPolicy(pinnedFingerprints: [otherFingerprint]))
            }
            #expect(pinError?.category == .hostKey)
        }
    }

    @Test func wrongUserKeyIsRefused() async throws {
        try await TestSSHServer.with { server in
            let stranger = server.directory + "/stranger"
            try TestSSHServer.keygen(stranger)
            let error = await #expect(throws: SSHError.self) {
                try await SSHConnection.connect(to: server.endpoint(identity: stranger), policy: server.pinned)
            }
            #expect(error?.category == .authentication)
            if case .authenticationFailed(_, let user, _) = error {
                #expect(user == "root")
            } else {
                Issue.record("expected authenticationFailed, got \(String(describing: error))")
            }
            let missing = await #expect(throws: SSHError.self) {
                try await SSHConnection.connect(
                    to: server.endpoint(identity: "/nonexistent/key"), policy: server.pinned)
            }
            #expect(missing?.category == .authentication)
        }
    }

    @Test func unreachablePortFailsFast() async throws {
        let port = try TestSSHServer.freePort()
        let error = await #expect(throws: SSHError.self) {
            try await SSHConnection.connect(
                to: SSHEndpoint(host: "127.0.0.1", port: port), policy: HostKeyPolicy(),
                options: SSHOptions(connectTimeout: .seconds(2)))
        }
        #expect(error?.category == .unreachable)
    }

    @Test func jumpHostReachesTargetAndVerifiesItsKey() async throws {
        try await TestSSHServer.with { bastion in
            try await TestSSHServer.with { target in
                let endpoint = target.endpoint(jump: bastion.endpoint())
                let both = HostKeyPolicy(pinnedFingerprints: [bastion.hostKeyFingerprint, target.hostKeyFingerprint])
                let connection = try await SSHConnection.connect(to: endpoint, policy: both)
                let out = try await connection.run(
                    "echo via-jump; cat", stdin: .bytes(Array(repeating: 65, count: 3 << 20)))
                #expect(out.stdout.prefix(8) == Array("via-jump".utf8)[...])
                #expect(out.stdout.count == 9 + (3 << 20))

                // Several commands at once over the forwarded session.
                try await withThrowingTaskGroup(of: String.self) { group in
                    for i in 0..<6 { group.addTask { try await connection.run("echo \(i)").stdoutText } }
                    var seen: [String] = []
                    for try await s in group { seen.append(s) }
                    #expect(Set(seen) == Set((0..<6).map { "\($0)\n" }))
                }
                await connection.close()

                // The target's key is checked on its own: pinning only the bastion refuses the target.
                let onlyBastion = HostKeyPolicy(pinnedFingerprints: [bastion.hostKeyFingerprint])
                let error = await #expect(throws: SSHError.self) {
                    try await SSHConnection.connect(to: endpoint, policy: onlyBastion)
                }
                if case .hostKeyChanged(let host, _, let presented) = error {
                    #expect(host == "127.0.0.1:\(target.port)")
                    #expect(presented == target.hostKeyFingerprint)
                } else {
                    Issue.record("expected hostKeyChanged for the target, got \(String(describing: error))")
                }
            }
        }
    }

    @Test func poolRunsThirtyTwoConcurrentCommandsOnOneConnection() async throws {
        try await TestSSHServer.with { server in
            let pool = SSHPool(policy: server.pinned, options: SSHOptions(maxChannels: 8))
            let endpoint = server.endpoint()
            try await withThrowingTaskGroup(of: (Int, String).self) { group in
                for i in 0..<32 {
                    group.addTask { (i, try await pool.run(endpoint, "sleep 0.2; echo \(i)").stdoutText) }
                }
                var results: [Int: String] = [:]
                for try await (i, out) in group { results[i] = out }
                #expect(results.count == 32)
                for (i, out) in results { #expect(out == "\(i)\n") }
            }
            #expect(await pool.connectionCount == 1)

            // A broken connection is replaced on next use.
            let first = try await pool.connection(for: endpoint)
            await first.close()
            let second = try await pool.connection(for: endpoint)
            #expect(first !== second)
            #expect(try await pool.run(endpoint, "echo again").stdoutText == "again\n")
            await pool.closeAll()
        }
    }

    @Test func uploadAndDownloadRoundTripWithDigests() async throws {
        try await TestSSHServer.with { server in
            let connection = try await server.connect()
            defer { Task { await connection.close() } }
            let local = server.directory + "/payload"
            let size = 256 << 20
            try await TestSSHServer.shellOffPool("head -c \(size) /dev/urandom > '\(local)'")
            let localDigest = try await TestSSHServer.shellOffPool("sha256sum '\(local)'").prefix(64)

            let remote = server.directory + "/remote/payload"
            try await connection.runChecked("mkdir -p \(shellQuote(server.directory + "/remote"))")
            var start = ContinuousClock.now
            let sent = try await connection.upload(file: local, to: remote)
            let up = (ContinuousClock.now - start).seconds
            #expect(sent == UInt64(size))
            let remoteDigest = try await connection.runChecked("sha256sum \(shellQuote(remote))").stdoutText.prefix(64)
            #expect(remoteDigest == localDigest)

            let back = server.directory + "/back"
            start = ContinuousClock.now
            let received = try await connection.download(remote, to: back)
            let down = (ContinuousClock.now - start).seconds
            #expect(received == UInt64(size))
            #expect(try await TestSSHServer.shellOffPool("sha256sum '\(back)'").prefix(64) == localDigest)
            print(
                "upload \(size >> 20) MiB: \(String(format: "%.0f", Double(size) / 1e6 / up)) MB/s; download to file: \(String(format: "%.0f", Double(size) / 1e6 / down)) MB/s"
            )

            let missing = await #expect(throws: SSHError.self) {
                try await connection.download(server.directory + "/nope", to: server.directory + "/nope.local")
            }
            #expect(missing?.category == .remote)
        }
    }

    @Test func uploadResumesAtAnOffset() async throws {
        try await TestSSHServer.with { server in
            let connection = try await server.connect()
            defer { Task { await connection.close() } }
            let local = server.directory + "/payload"
            try await TestSSHServer.shellOffPool("head -c 5000000 /dev/urandom > '\(local)'")
            let digest = try await TestSSHServer.shellOffPool("sha256sum '\(local)'").prefix(64)
            let remote = server.directory + "/payload.partial"

            // A broken transfer left the first 3 MB (plus garbage beyond, which resume overwrites).
            try await TestSSHServer.shellOffPool(
                "head -c 3000000 '\(local)' > '\(remote)'; head -c 100 /dev/zero >> '\(remote)'")
            let sizeOnNode = try await connection.runChecked("stat -c %s \(shellQuote(remote))").stdoutText
            #expect(sizeOnNode == "3000100\n")
            let sent = try await connection.upload(file: local, to: remote, offset: 3_000_000)
            #expect(sent == 2_000_000)
            #expect(try await connection.runChecked("sha256sum \(shellQuote(remote))").stdoutText.prefix(64) == digest)

            // Streamed upload with an offset, from an AsyncThrowingStream.
            let streamed = server.directory + "/streamed"
            try TestSSHServer.shell("printf 'AAAA' > '\(streamed)'")
            let stream = AsyncThrowingStream<[UInt8], any Error> { continuation in
                for _ in 0..<64 { continuation.yield([UInt8](repeating: 66, count: 65536)) }
                continuation.finish()
            }
            try await connection.upload(stream, to: streamed, offset: 2)
            let head = try await connection.runChecked(
                "head -c 4 \(shellQuote(streamed)); stat -c %s \(shellQuote(streamed))")
            #expect(head.stdoutText == "AABB\(2 + 64 * 65536)\n")

            // Download from an offset.
            var tail: [UInt8] = []
            try await connection.download(remote, offset: 4_999_990) { tail += $0 }
            let expected = try [UInt8](Data(contentsOf: URL(fileURLWithPath: local)).suffix(10))
            #expect(tail == expected)
        }
    }

    @Test func commandTimeoutClosesTheChannelAndKeepsTheConnection() async throws {
        try await TestSSHServer.with { server in
            let connection = try await server.connect()
            defer { Task { await connection.close() } }
            let start = ContinuousClock.now
            let error = await #expect(throws: SSHError.self) {
                try await connection.run("sleep 37.25", timeout: .seconds(1))
            }
            #expect(ContinuousClock.now - start < .seconds(30), "the timeout did not end the wait for the 37 s command")
            if case .timeout(_, let operation, let seconds) = error {
                #expect(operation == "command `sleep`")
                #expect(seconds == 1)
            } else {
                Issue.record("expected timeout, got \(String(describing: error))")
            }
            #expect(error?.category == .remote)
            #expect(try await connection.run("echo still-here").stdoutText == "still-here\n")
            // The command was killed on the host, not left running with its channel gone.
            #expect(await processGone(matching: "sleep 37.25"))
        }
    }

    /// Whether no process's command line contains `text` (waits up to 3 s for it to go).
    func processGone(matching text: String) async -> Bool {
        for _ in 0..<30 {
            // `[x]yz` matches "xyz" but not the pattern itself, so pgrep's own shell is not found.
            let pattern = "[" + String(text.prefix(1)) + "]" + String(text.dropFirst())
            guard let found = try? await TestSSHServer.shellOffPool("pgrep -f '\(pattern)' || true") else {
                return false
            }
            if found.isEmpty { return true }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    @Test func cancellationClosesTheChannel() async throws {
        try await TestSSHServer.with { server in
            let connection = try await server.connect()
            defer { Task { await connection.close() } }
            let task = Task { try await connection.run("sleep 38.5") }
            try await Task.sleep(for: .milliseconds(500))
            let start = ContinuousClock.now
            task.cancel()
            let result = await task.result
            #expect(ContinuousClock.now - start < .seconds(30), "cancelling did not end the wait for the 38 s command")
            guard case .failure(let error) = result else {
                Issue.record("expected cancellation")
                return
            }
            #expect(error as? SSHError == .cancelled(host: "127.0.0.1:\(server.port)"))
            #expect(await processGone(matching: "sleep 38.5"))

            // A callback that throws stops the command too, and its error is what the caller sees.
            struct Enough: Error {}
            await #expect(throws: Enough.self) {
                try await connection.exec("yes", onStdout: { _ in throw Enough() }, onStderr: { _ in })
            }
            #expect(try await connection.run("echo alive").stdoutText == "alive\n")

            // close() fails later commands with `closed`.
            await connection.close()
            let closed = await #expect(throws: SSHError.self) { try await connection.run("true") }
            #expect(closed?.category == .cancelled)
        }
    }

    static func maxRSSMiB() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return usage.ru_maxrss / 1024
    }
}
