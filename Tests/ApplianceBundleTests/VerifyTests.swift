import Foundation
import Testing

@testable import ApplianceBundle

@Suite struct VerifyTests {
    @Test func flippedBlobByteIsReportedByArtifactName() throws {
        let s = try SampleBundle(blobs: [
            "kubeadm": Data("0123456789abcdef-kubeadm-binary".utf8), "other": Data("x".utf8),
        ])
        let path = try s.build()
        try patch(path, replacing: Data("kubeadm-binary".utf8), with: Data("kubeadm-binarZ".utf8))
        let error = #expect(throws: BundleError.self) {
            try BundleArchive.open(path).verify(trusted: [s.key], allowUnsigned: false)
        }
        guard case .contentMismatch(_, let problems) = error else {
            Issue.record("expected contentMismatch, got \(String(describing: error))")
            return
        }
        #expect(problems.count == 1)
        #expect(problems[0].contains("artifact 'kubeadm' of component 'files'"))
        #expect(problems[0].contains("digest mismatch"))
    }

    @Test(arguments: [1, 2, 4])
    func parallelVerificationFindsEveryBadBlob(workers: Int) throws {
        var blobs: [String: Data] = [:]
        for i in 0..<12 {
            blobs["blob-\(i)"] = Data("payload-\(i)-".utf8) + Data(repeating: UInt8(i), count: 70_000 * (i % 3 + 1))
        }
        let s = try SampleBundle(blobs: blobs)
        let path = try s.build()
        for i in [2, 7, 11] {
            try patch(path, replacing: Data("payload-\(i)-".utf8), with: Data("PAYLOAD-\(i)-".utf8))
        }
        let error = #expect(throws: BundleError.self) {
            try BundleArchive.open(path).verify(trusted: [s.key], allowUnsigned: false, workers: workers)
        }
        guard case .contentMismatch(_, let problems) = error else {
            Issue.record("expected contentMismatch, got \(String(describing: error))")
            return
        }
        #expect(problems.count == 3)
        for i in [2, 7, 11] { #expect(problems.contains { $0.contains("'blob-\(i)'") }) }
    }

    @Test func truncatedBundleIsRefused() throws {
        let s = try SampleBundle()
        let path = try s.build()
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        for cut in [data.count / 2, data.count - 2000, 700] {
            try data.prefix(cut).write(to: URL(fileURLWithPath: path))
            let error = #expect(throws: BundleError.self) {
                try BundleArchive.open(path).verify(trusted: [s.key], allowUnsigned: false)
            }
            #expect(error?.exitStatus == .verification, "cut at \(cut): \(String(describing: error))")
        }
    }

    @Test func blobMissingFromTheArchiveIsNamed() throws {
        // A manifest listing a blob the archive does not have: build, then rewrite the tar without one blob.
        let s = try SampleBundle()
        let path = try s.build()
        let archive = try BundleArchive.open(path)
        var tar = TarFixture()
        tar.add("manifest.yaml", archive.manifestData)
        tar.add("manifest.yaml.sig", archive.signatureData ?? Data())
        // Every blob but the first: the bill of materials (issue 15) stays, one file blob goes missing.
        for kept in archive.blobs.dropFirst() {
            var keepData = Data()
            try archive.streamBlob(kept.digest) { keepData.append(contentsOf: $0) }
            tar.add("blobs/sha256/\(kept.digest.hex)", keepData)
        }
        tar.finish()
        try tar.write(to: path)
        let error = #expect(throws: BundleError.self) {
            try BundleArchive.open(path).verify(trusted: [s.key], allowUnsigned: false)
        }
        guard case .contentMismatch(_, let problems) = error else {
            Issue.record("expected contentMismatch, got \(String(describing: error))")
            return
        }
        #expect(problems.count == 1 && problems[0].contains("is missing"))
    }

    @Test func unlistedBlobIsRefused() throws {
        let s = try SampleBundle()
        let path = try s.build()
        let archive = try BundleArchive.open(path)
        var tar = TarFixture()
        tar.add("manifest.yaml", archive.manifestData)
        tar.add("manifest.yaml.sig", archive.signatureData ?? Data())
        for b in archive.blobs {
            var d = Data()
            try archive.streamBlob(b.digest) { d.append(contentsOf: $0) }
            tar.add("blobs/sha256/\(b.digest.hex)", d)
        }
        let extra = Data("smuggled".utf8)
        tar.add("blobs/sha256/\(SHA256Hasher.hash(extra).hex)", extra)
        tar.finish()
        try tar.write(to: path)
        let error = #expect(throws: BundleError.self) {
            try BundleArchive.open(path).verify(trusted: [s.key], allowUnsigned: false)
        }
        guard case .contentMismatch(_, let problems) = error else {
            Issue.record("expected contentMismatch, got \(String(describing: error))")
            return
        }
        #expect(problems.contains { $0.contains("not listed in the manifest") })
    }

    @Test func buildIsReproducibleAndStreamsBlobs() throws {
        let s = try SampleBundle()
        let a = try s.build("a.tar")
        let b = try s.build("b2.tar")
        // Same inputs and time: same manifest bytes (signatures of Ed25519 are deterministic too).
        #expect(try Data(contentsOf: URL(fileURLWithPath: a)) == Data(contentsOf: URL(fileURLWithPath: b)))
        let archive = try BundleArchive.open(a)
        for blob in archive.blobs {
            var n = 0
            try archive.streamBlob(blob.digest) { n += $0.count }
            #expect(Int64(n) == blob.size)
        }
        // No temporary build directory or partial file is left next to the output.
        #expect(s.dir.listing().allSatisfy { !$0.contains("partial") && !$0.contains(".appliance-build") })
    }
}

@Suite struct TarIndexTests {
    @Test func locatesEveryBlobByteRange() throws {
        let s = try SampleBundle(blobs: [
            "a": Data("alpha".utf8), "b": Data(repeating: 9, count: 70_000), "c": Data(),
        ])
        let path = try s.build()
        let archive = try BundleArchive.open(path)
        let locations = try archive.blobLocations()
        let file = try Data(contentsOf: URL(fileURLWithPath: path))
        // The three blobs, and the bill of materials every bundle carries.
        #expect(archive.blobs.count == 4)
        #expect(locations.count == archive.blobs.count)
        for b in archive.blobs {
            let loc = try #require(locations[b.digest])
            let bytes = file.subdata(in: Int(loc.dataOffset)..<Int(loc.dataOffset + loc.size))
            #expect(SHA256Hasher.hash(bytes) == b.digest)
        }
    }

    @Test func followsLongNamesInPaxHeaders() throws {
        // GNU tar writes pax headers for names over 100 bytes; the index must use them.
        let dir = TempDir()
        let long = String(repeating: "d", count: 120)
        try FileManager.default.createDirectory(atPath: dir.file("src/\(long)"), withIntermediateDirectories: true)
        try Data("payload".utf8).write(to: URL(fileURLWithPath: dir.file("src/\(long)/f")))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/tar")
        p.arguments = ["--format=pax", "-cf", dir.file("t.tar"), "-C", dir.file("src"), "\(long)/f"]
        try p.run()
        p.waitUntilExit()
        let index = try TarIndex.index(path: dir.file("t.tar"))
        let loc = try #require(index["\(long)/f"])
        let data = try Data(contentsOf: URL(fileURLWithPath: dir.file("t.tar")))
        #expect(
            String(decoding: data.subdata(in: Int(loc.dataOffset)..<Int(loc.dataOffset + loc.size)), as: UTF8.self)
                == "payload")
    }
}

@Suite struct OnePassBuildTests {
    /// Equal content under two names is packed once (the later copy is cut out of the archive after the
    /// fact), files of every size around the chunk and block boundaries round-trip, and GNU tar reads it.
    @Test func equalContentIsPackedOnceAndEveryBlobChecksOut() throws {
        let big = Data((0..<(1 << 20) + 777).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        let s = try SampleBundle(blobs: [
            "a-first": Data("same bytes\n".utf8), "b-chunky": big, "c-empty": Data(),
            "d-again": Data("same bytes\n".utf8),
            "e-block": Data(repeating: 7, count: 512), "f-after": Data(repeating: 3, count: 3_000),
        ])
        let path = try s.build()
        let archive = try BundleArchive.open(path)
        let verified = try archive.verify(trusted: [s.key], allowUnsigned: false)
        // Five distinct contents, and the bill of materials every bundle carries (issue 15).
        let sbom = try #require(verified.manifest.components.first { $0.name == "sbom" }?.artifacts.first)
        #expect(archive.blobs.count == 6)
        #expect(verified.manifest.allArtifacts.count == 7)
        #expect(verified.bytesVerified == Int64(big.count + 11 + 512 + 3_000) + sbom.size)
        let same = verified.manifest.allArtifacts.filter {
            $0.artifact.name == "a-first" || $0.artifact.name == "d-again"
        }
        #expect(Set(same.map(\.artifact.sha256)).count == 1)
        #expect(same.first?.artifact.sha256 == SHA256Hasher.hash(Data("same bytes\n".utf8)))

        // An independent reader agrees on the entries and their bytes.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/tar")
        p.arguments = ["-tvf", path]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let listing = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        #expect(listing.split(separator: "\n").filter { $0.contains("blobs/sha256/") && !$0.hasSuffix("/") }.count == 6)
        #expect(listing.contains("manifest.yaml.sig"))
    }

    /// The builder measures sizes when it prepares sources; a file that grew or shrank since is refused
    /// rather than packed inconsistently with its header.
    @Test(arguments: [Int64(9_999), 10_001])
    func fileChangingSizeDuringTheBuildIsRefused(measured: Int64) throws {
        let dir = TempDir()
        try Data(repeating: 1, count: 10_000).write(to: URL(fileURLWithPath: dir.file("a")))
        let writer = try BundleTarWriter(path: dir.file("out.tar"), mtime: 0)
        let error = #expect(throws: BundleError.self) { _ = try writer.addBlobs([(dir.file("a"), measured)]) }
        #expect("\(String(describing: error))".contains("changed size"))
    }

    @Test func paxSizeRecordCountsItsOwnLength() {
        for value in ["9", "8589934592", String(repeating: "9", count: 95)] {
            let r = BundleTarWriter.paxRecord("size", value)
            let text = String(decoding: r, as: UTF8.self)
            #expect(Int(text.prefix { $0 != " " }) == r.count)
            #expect(text.hasSuffix(" size=\(value)\n"))
        }
    }
}
