import ApplianceModel
import Foundation
import Testing

@testable import ApplianceBundle

/// Issue 11: Debian dependency closure and OS selection in specs and manifests.
@Suite struct DebianClosureTests {
    func load(_ text: String, files: [String: String] = [:]) throws -> BundleSpec {
        let dir = TempDir()
        for (name, content) in files { try content.write(toFile: dir.file(name), atomically: true, encoding: .utf8) }
        let path = dir.file("spec.yaml")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return try BundleSpec.load(path: path)
    }

    func problems(_ text: String) -> [String] {
        do {
            _ = try load(text)
            return []
        } catch let e as DiagnosticsError {
            return e.diagnostics.map(\.message)
        } catch {
            return ["\(error)"]
        }
    }

    static func spec(base: String = "debianBase: {name: b, packages: [base-files]}", artifacts: String, os: String = "")
        -> String
    {
        """
        apiVersion: appliance.dev/v1alpha1
        kind: BundleSpec
        metadata: {name: t}
        spec:
          version: 1.0.0
          kubernetes: {version: v1.34.3}
          \(base)
          components:
            - name: c
              version: "1"
              \(os)
              artifacts:
        \(artifacts)
        """
    }

    @Test("closure, os and debianBase are read from the spec; a component's os is inherited")
    func specFields() throws {
        let s = try load(
            """
            apiVersion: appliance.dev/v1alpha1
            kind: BundleSpec
            metadata: {name: t}
            spec:
              version: 1.0.0
              kubernetes: {version: v1.34.3}
              debianBase: {name: lab node, packagesFile: base.txt, packages: [systemd]}
              components:
                - name: c
                  version: "1"
                  os: [debian-12]
                  artifacts:
                    - name: containerd
                      kind: deb
                      source: {deb: {package: containerd, version: "1.6.20~ds1-1+deb12u3", closure: true}}
                    - name: ubuntu-only
                      kind: deb
                      os: [ubuntu-22.04, ubuntu-24.04]
                      source: {deb: {package: socat}}
            """,
            files: [
                "base.txt": "# a comment\nbase-files\n  dpkg  # the package manager\nperl-base 5.36.0-7+deb12u3\n\n"
            ])
        #expect(
            s.debianBase
                == DebianBase(
                    name: "lab node", packages: ["systemd", "base-files", "dpkg", "perl-base=5.36.0-7+deb12u3"]))
        let a = s.components[0].artifacts
        #expect(a[0].closure && a[0].os == ["debian-12"])
        #expect(!a[1].closure && a[1].os == ["ubuntu-22.04", "ubuntu-24.04"])
    }

    @Test("bad os values, an empty os list and a base without packages are refused with positions")
    func badFields() {
        let p = problems(
            Self.spec(
                base: "debianBase: {name: b}",
                artifacts: """
                            - name: a
                              kind: deb
                              os: [Debian 12]
                              source: {deb: {package: a, closure: yes}}
                            - name: b
                              kind: deb
                              os: []
                              source: {deb: {package: b}}
                    """))
        #expect(p.contains { $0.contains("'Debian 12' is not an OS release") })
        #expect(p.contains { $0.contains("'os' needs at least one release") })
        #expect(p.contains { $0.contains("'spec.debianBase' needs 'packages' or 'packagesFile'") })
    }

    @Test("apt's simulated install is read: Inst lines, and unmet dependencies named in apt's words")
    func aptOutput() {
        let out = """
            NOTE: This is only a simulation!
            Inst libseccomp2 (2.5.4-1+deb12u1 Debian:12.15/oldstable [amd64])
            Inst libc6 [2.36-9+deb12u13] (2.36-9+deb12u14 Debian:12.15/oldstable [amd64]) []
            Inst runc (1.1.5+ds1-1+deb12u1 Debian:12.15/oldstable, Debian-Security:12/oldstable-security [amd64])
            Conf runc (1.1.5+ds1-1+deb12u1 Debian:12.15/oldstable [amd64])
            """
        let p = DebianClosure.AptState.installs(out)
        #expect(p.map(\.name) == ["libseccomp2", "libc6", "runc"])
        #expect(
            p[1].version == "2.36-9+deb12u14" && p[2].version == "1.1.5+ds1-1+deb12u1" && p[2].architecture == "amd64")
        let broken = """
            Some packages could not be installed. This may mean that you have
            The following information may help to resolve the situation:

            The following packages have unmet dependencies:
             containerd : Depends: runc (>= 1.0.0~rc2~) but it is not installable
            E: Unable to correct problems, you have held broken packages.
            """
        #expect(
            DebianClosure.AptState.problems(broken)
                == "containerd : Depends: runc (>= 1.0.0~rc2~) but it is not installable")
        #expect(
            DebianClosure.AptState.dependencyNames("libc6 (>= 2.34), libseccomp2 (>= 2.5) | libfoo:any, python3:any")
                == ["libc6", "libseccomp2", "libfoo", "python3"])
    }

    @Test("os is recorded in the manifest only where given, read back, and selects nodes")
    func manifestOS() throws {
        let d = SHA256Hasher.hash(Data("x".utf8))
        let m = BundleManifest(
            name: "t", version: "1", created: "2026-01-01T00:00:00Z", upgradeFrom: [], kubernetesVersion: "v1.34.3",
            components: [
                .init(
                    name: "c", version: "1",
                    artifacts: [
                        .init(
                            name: "deb12", kind: .deb, sha256: d, size: 1, roles: ["all"], provenance: [],
                            os: ["debian-12"]),
                        .init(name: "any", kind: .file, sha256: d, size: 1, roles: ["all"], provenance: []),
                    ])
            ])
        let text = m.yaml()
        #expect(text.contains("os:") && text.components(separatedBy: "os:").count == 2)
        let back = try BundleManifest.parse(Data(text.utf8), label: "m")
        #expect(back == m)
        let deb12 = back.components[0].artifacts[0]
        #expect(deb12.applies(to: [.controlPlane], os: "debian-12"))
        #expect(!deb12.applies(to: [.controlPlane], os: "ubuntu-22.04"))
        #expect(deb12.applies(to: [.controlPlane], os: nil))  // not known yet: whatever the roles need
        #expect(back.components[0].artifacts[1].applies(to: [.gpuWorker], os: "ubuntu-22.04"))
    }

    /// The real apt of this host against its package lists (`apt-get update` once): needs no network.
    static var aptReady: Bool {
        FileManager.default.isExecutableFile(atPath: "/usr/bin/apt-get")
            && ((try? FileManager.default.contentsOfDirectory(atPath: "/var/lib/apt/lists"))?.contains {
                $0.contains("_Packages")
            } ?? false)
            && (try? String(contentsOfFile: "/etc/os-release", encoding: .utf8))?.contains("VERSION_ID=\"12\"") == true
    }

    @Test(
        "a closure brings what apt would install beyond the base, each with why; a base package is not brought",
        .enabled(if: aptReady, "needs apt with Debian 12 package lists (apt-get update)"))
    func realClosure() throws {
        let dir = TempDir()
        let spec = try load(
            Self.spec(
                base: "debianBase: {name: minimal, packages: [libc6]}",
                artifacts: """
                            - name: keepalived
                              kind: deb
                              roles: [control-plane]
                              source: {deb: {package: keepalived, version: "1:2.2.7-1+b2", closure: true}}
                            - name: conntrack
                              kind: deb
                              source: {deb: {package: conntrack, closure: true}}
                    """, os: "os: [debian-12]"))
        let out = try DebianClosure(workDirectory: dir.path, debCacheDirectory: dir.file("debs")).expand(spec)
        let a = out.components[0].artifacts
        let names = a.map(\.name)
        #expect(names.first == "keepalived")
        #expect(!names.contains("libc6"), "in the base")
        // keepalived links libnl; apt pulls it in, and the provenance says through what
        let nl = try #require(a.first { $0.name == "libnl-3-200" }, "\(names)")
        #expect(nl.notes.first { $0.key == "resolvedFrom" }?.value.contains("keepalived") == true)
        #expect(nl.notes.first { $0.key == "requiredBy" } != nil)
        #expect(nl.roles.contains("control-plane") && nl.os == ["debian-12"])
        guard case .debPackage(_, let v?, _) = nl.source else {
            Issue.record("not pinned")
            return
        }
        #expect(!v.isEmpty)
        // shared by both roots: one artifact, both in resolvedFrom, roles widened to 'all'
        let shared = a.filter { $0.notes.first { $0.key == "resolvedFrom" }?.value.contains(",") == true }
        for s in shared { #expect(s.roles.contains("all")) }
        #expect(Set(names).count == names.count, "no package twice")
        // deterministic: the same again
        let again = try DebianClosure(workDirectory: dir.path, debCacheDirectory: dir.file("debs")).expand(spec)
        #expect(again == out)
    }

    @Test(
        "a closure that apt cannot solve fails naming the artifact, the package and apt's reason",
        .enabled(if: aptReady, "needs apt with Debian 12 package lists (apt-get update)"))
    func unsolvable() throws {
        let dir = TempDir()
        let spec = try load(
            Self.spec(
                base: "debianBase: {name: minimal, packages: [libc6]}",
                artifacts: """
                            - name: runtime
                              kind: deb
                              source: {deb: {package: containerd, version: "0.0.1-nope", closure: true}}
                    """))
        #expect {
            try DebianClosure(workDirectory: dir.path, debCacheDirectory: dir.file("debs")).expand(spec)
        } throws: { error in
            let text = "\(error)"
            return text.contains("runtime") && text.contains("containerd=0.0.1-nope")
                && text.contains("Version '0.0.1-nope' for 'containerd' was not found")
        }
        let inBase = try load(
            Self.spec(
                base: "debianBase: {name: minimal, packages: [socat]}",
                artifacts: """
                            - name: socat
                              kind: deb
                              source: {deb: {package: socat, closure: true}}
                    """))
        #expect {
            try DebianClosure(workDirectory: dir.path, debCacheDirectory: dir.file("debs")).expand(inBase)
        } throws: { "\($0)".contains("already part of the base set") }
    }
}
