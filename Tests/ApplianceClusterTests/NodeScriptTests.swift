import ApplianceBundle
import Foundation
import Testing

@testable import ApplianceCluster

/// The node-side scripts, run for real with /bin/sh against a temporary store.
@Suite struct NodeScriptTests {
    let store = NSTemporaryDirectory() + "store-" + UUID().uuidString

    func sh(_ script: String, args: [String] = [], stdin: String = "") throws -> (
        out: String, err: String, status: Int32
    ) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", script, "test"] + args
        p.environment = ["STORE": store, "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"]
        let o = Pipe(), e = Pipe(), i = Pipe()
        p.standardOutput = o
        p.standardError = e
        p.standardInput = i
        try p.run()
        i.fileHandleForWriting.write(Data(stdin.utf8))
        try i.fileHandleForWriting.close()
        let out = o.fileHandleForReading.readDataToEndOfFile()
        let err = e.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self), p.terminationStatus)
    }

    func write(_ rel: String, _ data: Data) throws {
        let path = store + "/" + rel
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try data.write(to: URL(fileURLWithPath: path))
    }

    @Test func inventoryReportsStoreContents() throws {
        let blob = Data("blob one".utf8)
        let d = SHA256Hasher.hash(blob)
        try write("sha256/\(d.hex)", blob)
        try write("partial/\(String(repeating: "a", count: 64))", Data(count: 10))
        try write("bundles/2026.11.0/manifest.yaml", Data("x".utf8))
        let r = try sh(NodeScripts.inventory)
        #expect(r.status == 0, "\(r.err)")
        let inv = try NodeInventory.parse(r.out)
        #expect(inv.have == [d])
        #expect(inv.partial.values.first == 10)
        #expect(inv.staged == ["2026.11.0"])
        #expect(inv.freeBytes > 0)
        // issue 11: the node's OS release, as /etc/os-release says (ID-VERSION_ID)
        let release = try String(contentsOfFile: "/etc/os-release", encoding: .utf8)
        func field(_ k: String) -> String? {
            release.split(separator: "\n").first { $0.hasPrefix(k + "=") }.map {
                String($0.dropFirst(k.count + 1)).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            }
        }
        if let id = field("ID"), let v = field("VERSION_ID") { #expect(inv.os == "\(id)-\(v)") }
        #expect(try NodeInventory.parse("os ubuntu-22.04\nend\n").os == "ubuntu-22.04")
    }

    @Test func piecesFoldIntoPartialsAndFinalizeChecksDigests() throws {
        let blob = Data((0..<5000).map { UInt8($0 % 251) })
        let d = SHA256Hasher.hash(blob)
        // A first transfer stopped after 3000 bytes; a resumed one sent from 2048 on.
        try write("incoming/\(d.hex).0", blob.prefix(3000))
        try write("incoming/\(d.hex).2048", blob.dropFirst(2048))
        let bad = Data("corrupted".utf8)
        let claimed = SHA256Hasher.hash(Data("expected".utf8))
        try write("incoming/\(claimed.hex).0", bad)
        let r = try sh(NodeScripts.finalize, stdin: "\(d.hex) 5000\n\(claimed.hex) \(bad.count)\n")
        #expect(r.status == 0, "\(r.err)")
        let report = try FinalizeReport.parse(r.out)
        #expect(report.ok == [d])
        #expect(report.bad[claimed]?.hasPrefix("digest") == true)
        #expect(FileManager.default.contents(atPath: store + "/sha256/\(d.hex)") == blob)
        // The damaged blob never became visible, and its partial is gone.
        #expect(!FileManager.default.fileExists(atPath: store + "/sha256/\(claimed.hex)"))
        #expect(!FileManager.default.fileExists(atPath: store + "/partial/\(claimed.hex)"))
    }

    @Test func pieceBeyondThePartialIsDiscarded() throws {
        let blob = Data(repeating: 7, count: 4096)
        let d = SHA256Hasher.hash(blob)
        try write("incoming/\(d.hex).1000", blob.dropFirst(1000))  // nothing before byte 1000 exists
        let r = try sh(NodeScripts.inventory)
        let inv = try NodeInventory.parse(r.out)
        #expect(inv.partial[d] == nil)
        #expect(!FileManager.default.fileExists(atPath: store + "/incoming/\(d.hex).1000"))
    }

    /// The relay's last hop: extracts only the members it wants from a real piece stream.
    @Test func relayExtractsWantedPiecesFromAPieceStream() throws {
        let dir = NSTemporaryDirectory() + "bundle-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = Data(repeating: 1, count: 3000), b = Data(repeating: 2, count: 700)
        var file = Data("HEADER".utf8)
        let aOff = Int64(file.count)
        file += a
        let bOff = Int64(file.count)
        file += b
        try file.write(to: URL(fileURLWithPath: dir + "/b.tar"))
        let da = SHA256Hasher.hash(a), db = SHA256Hasher.hash(b)
        let pieces = [
            BlobPiece(digest: da, offset: 1000, size: 3000, fileOffset: aOff),
            BlobPiece(digest: db, offset: 0, size: 700, fileOffset: bOff),
        ]
        let stream = try PieceStream(bundlePath: dir + "/b.tar", pieces: pieces, chunkSize: 512)
        var tar = Data()
        while let c = try stream.next() { tar += c }
        #expect(Int64(tar.count) == stream.totalBytes)
        try tar.write(to: URL(fileURLWithPath: dir + "/stream.tar"))
        try write(".staging/want-r1", Data("\(pieces[0].memberName)\n".utf8))
        try write(".staging/keep-r1.sh", Data(NodeScripts.keep.utf8))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", NodeScripts.relay, "relay", "r1"]
        p.environment = ["STORE": store, "PATH": "/usr/bin:/bin"]
        p.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: dir + "/stream.tar"))
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        #expect(FileManager.default.contents(atPath: store + "/incoming/\(da.hex).1000") == a.dropFirst(1000))
        #expect(!FileManager.default.fileExists(atPath: store + "/incoming/\(db.hex).0"))
        // Hashed as it arrived: the digest of exactly the bytes of the piece.
        let sum = FileManager.default.contents(atPath: store + "/digests/\(da.hex).1000")
        #expect(sum.map { String(decoding: $0, as: UTF8.self) } == SHA256Hasher.hash(a.dropFirst(1000)).hex + "\n")
        // Pieces are written in the background; the relay reports only once none is still being written.
        let staging = try FileManager.default.contentsOfDirectory(atPath: store + "/.staging")
        #expect(!staging.contains { $0.hasPrefix("keeping-") || $0.hasPrefix("keep-failed-") }, "\(staging)")

        // A piece that cannot be written (here its file name is taken by a directory) fails the relay,
        // with the reason, once the stream has been read to its end.
        try FileManager.default.removeItem(atPath: store + "/incoming/\(da.hex).1000")
        try FileManager.default.createDirectory(
            atPath: store + "/incoming/\(da.hex).1000", withIntermediateDirectories: true)
        let q = Process()
        q.executableURL = URL(fileURLWithPath: "/bin/sh")
        q.arguments = ["-c", NodeScripts.relay, "relay", "r1"]
        q.environment = ["STORE": store, "PATH": "/usr/bin:/bin"]
        q.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: dir + "/stream.tar"))
        let err = Pipe()
        q.standardError = err
        try q.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        q.waitUntilExit()
        #expect(q.terminationStatus != 0)
        #expect(text.contains("relay-failed") && text.contains("cannot write"), "\(text)")
        #expect(!FileManager.default.fileExists(atPath: store + "/digests/\(da.hex).1000"))
    }

    /// A blob that arrived whole from byte 0 is renamed into place and its arrival digest decides; a digest
    /// that does not match the name is refused like a blob read back with the wrong digest.
    @Test func arrivalDigestsDecideWithoutReadingTheBlobAgain() throws {
        let good = Data(repeating: 3, count: 2000), other = Data(repeating: 4, count: 100)
        let dg = SHA256Hasher.hash(good), doth = SHA256Hasher.hash(other)
        try write("incoming/\(dg.hex).0", good)
        try write("digests/\(dg.hex).0", Data((dg.hex + "\n").utf8))
        try write("incoming/\(doth.hex).0", other)
        try write("digests/\(doth.hex).0", Data((String(repeating: "0", count: 64) + "\n").utf8))
        // A stale digest of a partial that no longer exists is swept.
        try write("digests/\(String(repeating: "e", count: 64))", Data("x\n".utf8))
        let r = try sh(NodeScripts.finalize, stdin: "\(dg.hex) 2000\n\(doth.hex) 100\n")
        #expect(r.status == 0, "\(r.err)")
        let report = try FinalizeReport.parse(r.out)
        #expect(report.ok == [dg])
        #expect(report.bad[doth]?.hasPrefix("digest") == true)
        #expect(FileManager.default.contents(atPath: store + "/sha256/\(dg.hex)") == good)
        #expect(!FileManager.default.fileExists(atPath: store + "/partial/\(doth.hex)"))
        #expect((try FileManager.default.contentsOfDirectory(atPath: store + "/digests")).isEmpty)
    }

    /// Appending a resumed piece to a partial drops the partial's arrival digest (it no longer covers it).
    @Test func appendingToAPartialDropsItsDigest() throws {
        let blob = Data((0..<3000).map { UInt8($0 % 199) })
        let d = SHA256Hasher.hash(blob)
        try write("partial/\(d.hex)", blob.prefix(1000))
        try write("digests/\(d.hex)", Data((d.hex + "\n").utf8))  // wrong for 1000 bytes: must not survive
        try write("incoming/\(d.hex).1000", blob.dropFirst(1000))
        let inv = try NodeInventory.parse(try sh(NodeScripts.inventory).out)
        #expect(inv.partial[d] == 3000)
        #expect(!FileManager.default.fileExists(atPath: store + "/digests/\(d.hex)"))
        let report = try FinalizeReport.parse(try sh(NodeScripts.finalize, stdin: "\(d.hex) 3000\n").out)
        #expect(report.ok == [d])
    }
}

extension NodeScriptTests {
    /// The final check records the bundle's manifest and signature in the same round trip, and only when
    /// every blob it was given checks out; the signature may be empty (an unsigned bundle).
    @Test(arguments: [true, false])
    func finalizeRecordsTheManifestOnlyWhenEveryBlobIsOK(allGood: Bool) throws {
        let blob = Data((0..<4000).map { UInt8($0 % 241) })
        let d = SHA256Hasher.hash(blob)
        try write("incoming/\(d.hex).0", allGood ? blob : blob.prefix(3999))
        let manifest = "apiVersion: x\nend\nkind: Bundle\n"  // a line `end` inside must not stop anything
        let sig = allGood ? "" : "signature bytes\n"
        let dir = store + "/bundles/1.2.3"
        let r = try sh(
            NodeScripts.finalize, args: [dir, String(manifest.utf8.count), String(sig.utf8.count)],
            stdin: "\(d.hex) 4000\nend\n" + manifest + sig)
        #expect(r.status == 0, "\(r.err)")
        let report = try FinalizeReport.parse(r.out)
        #expect(report.recorded == allGood)
        #expect(FileManager.default.fileExists(atPath: dir + "/manifest.yaml") == allGood)
        if allGood {
            #expect(report.ok == [d])
            #expect(try String(contentsOfFile: dir + "/manifest.yaml", encoding: .utf8) == manifest)
            #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/manifest.yaml.sig")).isEmpty)
            let inv = try NodeInventory.parse(try sh(NodeScripts.inventory).out)
            #expect(inv.staged == ["1.2.3"] && inv.have == [d])
        } else {
            #expect(report.bad[d]?.hasPrefix("short") == true)
            #expect(!FileManager.default.fileExists(atPath: dir + "/manifest.yaml.tmp"))
        }
    }
}

@Suite struct ChainPlanTests {
    let d1 = SHA256Hasher.hash(Data("1".utf8)), d2 = SHA256Hasher.hash(Data("2".utf8)),
        d3 = SHA256Hasher.hash(Data("3".utf8))

    @Test func chainSkipsNodesWithNothingToReceiveAndResumesFromTheLeastProgress() {
        let loc: [SHA256Digest: TarIndex.Location] = [
            d1: .init(dataOffset: 1024, size: 100), d2: .init(dataOffset: 2048, size: 50),
            d3: .init(dataOffset: 4096, size: 10),
        ]
        let plan = ChainPlan.make(
            order: ["a", "b", "c", "d"],
            needs: ["a": [d1: 100, d2: 50], "b": [:], "c": [d1: 100], "d": [d3: 10]],
            partials: ["a": [d1: 60], "c": [d1: 80]],
            locations: loc)
        #expect(plan.nodes == ["a", "c", "d"])
        let p1 = plan.pieces.first { $0.digest == d1 }
        #expect(p1?.offset == 60)
        #expect(p1?.fileOffset == 1024)
        #expect(plan.payloadBytes == 40 + 50 + 10)
        #expect(plan.wants["c"] == ["\(d1.hex).60"])
        #expect(plan.wants["a"]?.count == 2)
        #expect(plan.wants["b"] == nil)
    }

    @Test func nothingToSendMakesAnEmptyChain() {
        let plan = ChainPlan.make(order: ["a"], needs: ["a": [:]], partials: [:], locations: [:])
        #expect(plan.nodes.isEmpty && plan.pieces.isEmpty && plan.payloadBytes == 0)
    }
}
