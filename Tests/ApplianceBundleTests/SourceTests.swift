import Foundation
import Testing

@testable import ApplianceBundle

@Suite struct SourceTests {
    /// A real Debian package made with dpkg-deb, read back through libarchive.
    @Test func readsControlFieldsOfARealDeb() throws {
        let dir = TempDir()
        let root = dir.file("pkg")
        try FileManager.default.createDirectory(atPath: root + "/DEBIAN", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(
            atPath: root + "/usr/share/doc/hello-appliance", withIntermediateDirectories: true)
        try "hello\n".write(toFile: root + "/usr/share/doc/hello-appliance/README", atomically: true, encoding: .utf8)
        try """
        Package: hello-appliance
        Version: 1:2.3-4
        Architecture: amd64
        Maintainer: Test <test@example.invalid>
        Description: test package
         with a continuation line

        """.write(toFile: root + "/DEBIAN/control", atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/dpkg-deb")
        p.arguments = ["--build", "--root-owner-group", root, dir.file("hello.deb")]
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        try #require(p.terminationStatus == 0)
        let control = try DebianPackage.control(of: dir.file("hello.deb"), artifact: "hello")
        #expect(control["Package"] == "hello-appliance")
        #expect(control["Version"] == "1:2.3-4")
        #expect(control["Description"]?.contains("continuation") == true)
        // Not a deb: a clear refusal.
        try Data("not an archive".utf8).write(to: URL(fileURLWithPath: dir.file("bad.deb")))
        #expect(throws: BundleError.self) { try DebianPackage.control(of: dir.file("bad.deb"), artifact: "bad") }
    }

    @Test func ociLayoutWithCorruptBlobIsRefused() throws {
        let dir = TempDir()
        let src = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "../../bundles/sample/images/hello"
        ).standardized.path
        let copy = dir.file("layout")
        try FileManager.default.copyItem(atPath: src, toPath: copy)
        let ok = try OCILayout.validate(directory: copy, artifact: "img")
        #expect(ok.reference == "registry.appliance.local/hello:1.0")
        let blobs = try FileManager.default.contentsOfDirectory(atPath: copy + "/blobs/sha256")
        let victim = copy + "/blobs/sha256/" + blobs[0]
        var data = try Data(contentsOf: URL(fileURLWithPath: victim))
        data[0] ^= 0xFF
        try data.write(to: URL(fileURLWithPath: victim))
        let error = #expect(throws: BundleError.self) { try OCILayout.validate(directory: copy, artifact: "img") }
        #expect(error?.message.contains("does not match its digest") == true)
    }

    @Test func chartDirectoryIsPackagedLikeHelmPackage() throws {
        let dir = TempDir()
        let chart = dir.file("mychart")
        try FileManager.default.createDirectory(atPath: chart + "/templates", withIntermediateDirectories: true)
        try "apiVersion: v2\nname: mychart\nversion: 1.2.3\n".write(
            toFile: chart + "/Chart.yaml", atomically: true, encoding: .utf8)
        try "kind: ConfigMap\n".write(toFile: chart + "/templates/cm.yaml", atomically: true, encoding: .utf8)
        let prep = SourcePreparer(workDirectory: dir.path, debCacheDirectory: dir.file("c"))
        let input = try prep.prepare(
            .init(name: "c", kind: .chart, roles: ["all"], source: .chart(chart), location: nil), component: "p")
        #expect(input.path.hasSuffix("mychart-1.2.3.tgz"))
        #expect(input.provenance.contains { $0 == ("version", "1.2.3") })
        let info = try HelmChart.read(archive: input.path, artifact: "c")
        #expect(info.name == "mychart" && info.version == "1.2.3")
    }
}
