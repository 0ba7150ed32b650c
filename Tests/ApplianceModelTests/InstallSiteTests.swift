import Foundation
import Testing

@testable import ApplianceModel

@Suite struct IPv4Tests {
    @Test func parsesAddressesStrictly() {
        #expect(IPv4Address("10.0.0.11")?.description == "10.0.0.11")
        #expect(IPv4Address("255.255.255.255")?.value == UInt32.max)
        for bad in [
            "10.0.0", "10.0.0.256", "10.0.0.-1", "a.b.c.d", "10..0.1", " 10.0.0.1", "10.0.0.1 ", "1000.0.0.1", "",
        ] {
            #expect(IPv4Address(bad) == nil, "\(bad)")
        }
    }

    @Test func parsesCIDRs() throws {
        let c = try #require(IPv4CIDR("10.244.1.7/16"))
        #expect(c.network.description == "10.244.0.0")
        #expect(c.last.description == "10.244.255.255")
        #expect(c.hasHostBits)
        #expect(c.size == 65536)
        #expect(c.contains(IPv4Address("10.244.200.1")!))
        #expect(!c.contains(IPv4Address("10.245.0.0")!))
        #expect(IPv4CIDR("0.0.0.0/0")?.contains(IPv4Address("8.8.8.8")!) == true)
        #expect(IPv4CIDR("10.0.0.1/32")?.last.description == "10.0.0.1")
        #expect(IPv4CIDR("10.0.0.0/24")?.address(at: 100)?.description == "10.0.0.100")
        #expect(IPv4CIDR("10.0.0.0/24")?.address(at: 256) == nil)
        for bad in ["10.0.0.0", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/a", "10.0.0/8", "10.0.0.0/8/1", "10.0.0.0/008"] {
            #expect(IPv4CIDR(bad) == nil, "\(bad)")
        }
    }

    @Test func overlapIsSymmetricAndExact() throws {
        func o(_ a: String, _ b: String) -> Bool { IPv4CIDR(a)!.overlaps(IPv4CIDR(b)!) }
        #expect(o("10.96.0.0/12", "10.100.0.0/16"))
        #expect(o("10.100.0.0/16", "10.96.0.0/12"))
        #expect(!o("10.96.0.0/12", "10.112.0.0/12"))  // adjacent blocks
        #expect(!o("10.244.0.0/16", "10.96.0.0/12"))
        #expect(o("0.0.0.0/0", "192.168.1.0/24"))
        #expect(o("10.0.0.5/32", "10.0.0.0/24"))
        #expect(!o("10.0.1.0/24", "10.0.0.0/24"))
        #expect(SiteInventory.cidrsOverlap("10.96.0.0/16", "10.96.128.0/17"))
    }
}

@Suite struct InstallSiteTests {
    static let profileText = """
        apiVersion: appliance.dev/v1alpha1
        kind: Profile
        metadata: {name: t}
        spec:
          os: {releases: [{id: debian, version: "12"}]}
          gpuStack: {mode: host-driver, driverVersions: ["535.161.08"], operatorVersion: v24.9.2}
          kubernetes: {version: 1.34.3, podCIDR: 10.244.0.0/16, serviceCIDR: 10.96.0.0/12, roleLabels: runai}
          roles:
            control-plane: {cpus: 1, memoryGiB: 1, diskGiB: 10}
            system: {cpus: 1, memoryGiB: 1, diskGiB: 10}
            gpu-worker: {cpus: 1, memoryGiB: 1, diskGiB: 10}
            cpu-worker: {cpus: 1, memoryGiB: 1, diskGiB: 10}
          controlPlane: {nodes: 3, components: []}
        """

    static func profile() throws -> HardwareProfile {
        try HardwareProfile.parse(text: profileText, file: "t.yaml")
    }

    /// Loads a site from text in a temporary folder (with `ca.crt`, `tls.crt`, `tls.key` beside it).
    static func load(_ text: String) throws -> SiteInventory {
        let dir = NSTemporaryDirectory() + "site-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for f in ["ca.crt", "tls.crt", "tls.key", "oidc-ca.crt"] {
            try "x".write(toFile: dir + "/" + f, atomically: true, encoding: .utf8)
        }
        try text.write(toFile: dir + "/site.yaml", atomically: true, encoding: .utf8)
        return try SiteInventory.load(path: dir + "/site.yaml")
    }

    static let ha = """
        apiVersion: appliance.dev/v1alpha1
        kind: Site
        metadata: {name: dc1}
        spec:
          hosts:
            - {name: cp-1, address: 10.0.0.11, roles: [control-plane]}
            - {name: cp-2, address: 10.0.0.12, roles: [control-plane]}
            - {name: cp-3, address: 10.0.0.13, roles: [control-plane]}
            - {name: sys-1, address: 10.0.0.21, roles: [system]}
            - {name: gpu-1, address: 10.0.0.31, roles: [gpu-worker]}
          network:
            domain: ml.example.internal
            apiEndpoint:
              address: 10.0.0.100
              mode: virtual-ip
              name: api.ml.example.internal
              interface: eth0
              virtualRouterID: 42
              unicast: true
            nodeCIDR: 10.0.0.0/24
          install: {parallelism: 4}
          roles: {dedicatedSystemNodes: true}
          preflight:
            waivers:
              - {check: hw.cpu-count, reason: lab nodes are containers}
              - {check: os.release, node: gpu-1, reason: "Debian 12 stands in for Ubuntu 22.04"}
          auth:
            oidc:
              issuerURL: https://id.ml.example.internal/auth/realms/runai
              clientID: runai
              usernamePrefix: "-"
              groupsClaim: groups
              caFile: oidc-ca.crt
          registry: {mode: in-cluster, certificate: tls.crt, key: tls.key, ca: ca.crt, port: 5443}
        """

    @Test func loadsTheInstallFields() throws {
        let site = try Self.load(Self.ha)
        let e = try #require(site.network?.endpoint)
        #expect(e.mode == .virtualIP)
        #expect(e.port == 8443)
        #expect(e.hostPort == "api.ml.example.internal:8443")
        #expect(e.interface == "eth0" && e.virtualRouterID == 42 && e.unicast)
        #expect(site.network?.apiEndpoint == "10.0.0.100:8443")
        #expect(site.network?.nodeCIDR == "10.0.0.0/24")
        #expect(site.install.parallelism == 4)
        #expect(site.roles.dedicatedSystemNodes)
        #expect(site.preflight.waivers.count == 2)
        #expect(site.preflight.waiver(check: "os.release", node: "gpu-1")?.reason.hasPrefix("Debian 12") == true)
        #expect(site.preflight.waiver(check: "os.release", node: "cp-1") == nil)
        #expect(site.preflight.waiver(check: "hw.cpu-count", node: "cp-1") != nil)
        #expect(site.auth?.oidc?.clientID == "runai")
        #expect(site.auth?.oidc?.usernamePrefix == "-")
        #expect(site.auth?.oidc?.caFile?.hasSuffix("/oidc-ca.crt") == true)
        #expect(site.registry?.port == 5443)
        #expect(site.registry?.certificateFile?.hasSuffix("/tls.crt") == true)
        #expect(site.registryHosts.map(\.name) == ["sys-1"])
        #expect(InstallValidation.validate(site: site, profile: try Self.profile()).isEmpty)
    }

    @Test func roundTripsTheInstallFieldsThroughYAML() throws {
        let dir = NSTemporaryDirectory() + "site-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for f in ["ca.crt", "tls.crt", "tls.key", "oidc-ca.crt"] {
            try "x".write(toFile: dir + "/" + f, atomically: true, encoding: .utf8)
        }
        try Self.ha.write(toFile: dir + "/site.yaml", atomically: true, encoding: .utf8)
        let site = try SiteInventory.load(path: dir + "/site.yaml")
        try site.yaml().write(toFile: dir + "/again.yaml", atomically: true, encoding: .utf8)
        let again = try SiteInventory.load(path: dir + "/again.yaml")
        #expect(again.network == site.network)
        #expect(again.install == site.install)
        #expect(again.roles == site.roles)
        #expect(again.preflight == site.preflight)
        #expect(again.auth == site.auth)
        #expect(again.registry == site.registry)
    }

    @Test func stringEndpointIsALoadBalancer() throws {
        let text = Self.ha.replacingOccurrences(
            of: """
                apiEndpoint:
                      address: 10.0.0.100
                      mode: virtual-ip
                      name: api.ml.example.internal
                      interface: eth0
                      virtualRouterID: 42
                      unicast: true
                """, with: "apiEndpoint: lb.ml.example.internal")
        let site = try Self.load(text)
        #expect(site.network?.endpoint == SiteInventory.APIEndpoint(address: "lb.ml.example.internal"))
        #expect(site.network?.endpoint?.hostPort == "lb.ml.example.internal:6443")
        #expect(InstallValidation.validate(site: site, profile: try Self.profile()).isEmpty)
    }

    @Test func reportsBadInstallFieldsWithPositions() throws {
        let text = """
            apiVersion: appliance.dev/v1alpha1
            kind: Site
            metadata: {name: dc1}
            spec:
              hosts:
                - {name: cp-1, address: 10.0.0.11, roles: [control-plane]}
              network:
                domain: ml.example.internal
                apiEndpoint: {address: vip.example, mode: virtual-ip, port: 6443}
              install: {parallelism: 0}
              preflight:
                waivers:
                  - {check: hw.cpu-count}
                  - {check: "HW CPU", node: nobody, reason: x}
              auth: {oidc: {issuerURL: "http://id.example", clientID: runai, caFile: missing.crt}}
              registry: {mode: existing, endpoint: reg.example:5000, certificate: tls.crt, key: tls.key}
            """
        let error = #expect(throws: DiagnosticsError.self) { try Self.load(text) }
        let d = error?.diagnostics ?? []
        let m = d.map(\.message)
        #expect(m.contains { $0.contains("a virtual IP must be an IPv4 address") })
        #expect(m.contains { $0.contains("already listen on 6443") })
        #expect(m.contains { $0.contains("'spec.install.parallelism' must be between 1 and 1024") })
        #expect(m.contains { $0.contains("missing required field 'reason'") })
        #expect(m.contains { $0.contains("must be a check id like") })
        #expect(m.contains { $0.contains("names node 'nobody'") })
        #expect(m.contains { $0.contains("must be an https:// URL") })
        #expect(m.contains { $0.contains("missing.crt, which does not exist") })
        #expect(m.contains { $0.contains("configure the registry the installer runs") })
        #expect(d.allSatisfy { $0.location != nil })
    }

    func validate(_ text: String) throws -> [String] {
        let site = try Self.load(text)
        let diags = InstallValidation.validate(site: site, profile: try Self.profile())
        #expect(diags.allSatisfy { $0.location?.file.hasSuffix("site.yaml") == true && ($0.location?.line ?? 0) > 1 })
        return diags.map(\.message)
    }

    func site(hosts: String, network: String = "", extra: String = "") -> String {
        """
        apiVersion: appliance.dev/v1alpha1
        kind: Site
        metadata: {name: dc1}
        spec:
          hosts:
        \(hosts)
        \(network)
        \(extra)
        """
    }

    @Test(arguments: [2, 4])
    func refusesAnEvenNumberOfControlPlanesWithTheQuorumArithmetic(_ n: Int) throws {
        let hosts = (1...n).map { "    - {name: cp-\($0), address: 10.0.0.1\($0), roles: [control-plane]}" }
            .joined(separator: "\n")
        let net = "  network: {domain: ml.example.internal, apiEndpoint: lb.example.internal}"
        let m = try validate(site(hosts: hosts, network: net))
        #expect(m.count == 1)
        let quorum = n / 2 + 1
        #expect(m.first?.contains("\(n) control-plane nodes") == true)
        #expect(m.first?.contains("quorum of \(quorum) of \(n) members") == true)
        #expect(m.first?.contains("tolerate \(n - quorum) failure") == true)
        #expect(m.first?.contains("use \(n - 1), or \(n + 1)") == true)
    }

    @Test func acceptsOneThreeAndFiveControlPlanes() throws {
        for n in [1, 3, 5] {
            let hosts = (1...n).map { "    - {name: cp-\($0), address: 10.0.0.1\($0), roles: [control-plane]}" }
                .joined(separator: "\n")
            let net = n > 1 ? "  network: {domain: ml.example.internal, apiEndpoint: lb.example.internal}" : ""
            #expect(try validate(site(hosts: hosts, network: net)).isEmpty, "\(n)")
        }
    }

    @Test func refusesSeveralControlPlanesWithoutAnEndpoint() throws {
        let hosts = (1...3).map { "    - {name: cp-\($0), address: 10.0.0.1\($0), roles: [control-plane]}" }
            .joined(separator: "\n")
        let m = try validate(site(hosts: hosts))
        #expect(
            m == [
                "3 control-plane nodes need a stable API endpoint for joins and clients: set spec.network.apiEndpoint to a load balancer or a virtual IP (mode: virtual-ip)"
            ])
    }

    @Test func refusesOverlappingAddressPlans() throws {
        let hosts = """
                - {name: cp-1, address: 10.96.0.11, roles: [control-plane]}
                - {name: w-1, address: 10.0.0.31, roles: [cpu-worker]}
            """
        let net = """
              network:
                domain: ml.example.internal
                apiEndpoint: 10.96.0.11
                podCIDR: 10.0.0.0/16
                nodeCIDR: 10.0.0.0/24
            """
        let m = try validate(site(hosts: hosts, network: net))
        // pod CIDR (site) over the nodes' network and w-1; service CIDR (profile) over cp-1's address,
        // cp-1 outside nodeCIDR; the endpoint inside the service CIDR.
        #expect(m.contains { $0.contains("pod CIDR 10.0.0.0/16 overlaps the nodes' network 10.0.0.0/24") })
        #expect(m.contains { $0.contains("host 'w-1' address 10.0.0.31 is inside the pod CIDR 10.0.0.0/16") })
        #expect(
            m.contains {
                $0.contains("host 'cp-1' address 10.96.0.11 is inside the service CIDR 10.96.0.0/12 (from profile 't')")
            })
        #expect(m.contains { $0.contains("host 'cp-1' address 10.96.0.11 is outside the nodes' network") })
        #expect(m.contains { $0.contains("the API endpoint 10.96.0.11 is inside the service CIDR") })
    }

    @Test func refusesPodAndServiceOverlapFromTheSite() throws {
        let hosts = "    - {name: cp-1, address: 10.0.0.11, roles: [control-plane]}"
        let net = """
              network:
                domain: ml.example.internal
                apiEndpoint: 10.0.0.11
                podCIDR: 10.96.0.0/16
            """
        let m = try validate(site(hosts: hosts, network: net))
        #expect(
            m == [
                "pod CIDR 10.96.0.0/16 overlaps service CIDR 10.96.0.0/12 (from profile 't'): pod and service addresses would be ambiguous; pick disjoint ranges"
            ])
    }

    @Test func checksTheVirtualIP() throws {
        let hosts = (1...3).map { "    - {name: cp-\($0), address: 10.0.0.1\($0), roles: [control-plane]}" }
            .joined(separator: "\n")
        func net(_ vip: String, _ nodeCIDR: String?) -> String {
            """
              network:
                domain: ml.example.internal
                apiEndpoint: {address: \(vip), mode: virtual-ip}
            \(nodeCIDR.map { "    nodeCIDR: \($0)" } ?? "")
            """
        }
        #expect(try validate(site(hosts: hosts, network: net("10.0.0.100", "10.0.0.0/24"))).isEmpty)
        // A node's address is refused on load already; a site built in code is refused by the validation.
        let taken = #expect(throws: DiagnosticsError.self) {
            try Self.load(site(hosts: hosts, network: net("10.0.0.12", "10.0.0.0/24")))
        }
        #expect(taken?.diagnostics.first?.message.contains("is one node's address") == true)
        var coded = try Self.load(site(hosts: hosts, network: net("10.0.0.100", "10.0.0.0/24")))
        coded.network?.endpoint?.address = "10.0.0.12"
        #expect(
            InstallValidation.validate(site: coded, profile: try Self.profile()).map(\.message) == [
                "the virtual IP 10.0.0.12 is host 'cp-2''s own address; pick a free address in the nodes' network"
            ])
        #expect(
            try validate(site(hosts: hosts, network: net("10.0.1.100", "10.0.0.0/24"))).first?.contains(
                "outside the nodes' network 10.0.0.0/24") == true)
        #expect(
            try validate(site(hosts: hosts, network: net("10.0.0.255", "10.0.0.0/24"))).first?.contains(
                "network or broadcast address") == true)
        #expect(
            try validate(site(hosts: hosts, network: net("10.0.0.100", nil))).first?.contains(
                "a virtual IP needs spec.network.nodeCIDR") == true)
        let overPods = try validate(
            site(hosts: hosts, network: net("10.0.0.100", "10.0.0.0/24") + "\n    podCIDR: 10.0.0.128/25"))
        #expect(!overPods.contains { $0.contains("virtual IP 10.0.0.100 is inside") })
        #expect(overPods.contains { $0.contains("pod CIDR 10.0.0.128/25 overlaps the nodes' network") })
    }

    @Test func refusesAnAddressNamedTwiceOnDifferentPorts() throws {
        let hosts = """
                - {name: cp-1, address: 10.0.0.11, roles: [control-plane]}
                - {name: w-1, address: 10.0.0.11, port: 2222, roles: [cpu-worker]}
            """
        let m = try validate(site(hosts: hosts))
        #expect(m == ["address 10.0.0.11 is named twice ('cp-1' and 'w-1'); each node needs its own address"])
    }

    @Test func refusesWaiversForUnknownNodesBuiltInCode() throws {
        var site = try Self.load(site(hosts: "    - {name: cp-1, address: 10.0.0.11, roles: [control-plane]}"))
        site.preflight.waivers = [
            SiteInventory.PreflightWaiver(
                check: "os.release", node: "gpu-9", reason: "r",
                location: SourceLocation(file: "s.yaml", line: 9, column: 7))
        ]
        let d = InstallValidation.validate(site: site, profile: try Self.profile())
        #expect(
            d.map(\.description) == [
                "s.yaml:9:7: the waiver of 'os.release' names node 'gpu-9', which is not in spec.hosts (known: cp-1)"
            ])
    }

    /// The documented example loads and passes install validation against the profile it names.
    @Test func exampleSiteIsValidForItsProfile() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let site = try SiteInventory.load(path: root.appendingPathComponent("schemas/examples/site-ha.yaml").path)
        let profile = try HardwareProfile.load(path: root.appendingPathComponent("profiles/hpc-8xa100.yaml").path)
        #expect(site.profile == profile.name)
        #expect(InstallValidation.validate(site: site, profile: profile).isEmpty)
        #expect(site.network?.endpoint?.mode == .virtualIP && site.preflight.waivers.count == 2)
    }

    @Test func parsesCommandLineWaivers() throws {
        let w = try SiteInventory.PreflightWaiver.parse(commandLine: "k8s.binaries@cp-1= installed by install ").get()
        #expect(w == SiteInventory.PreflightWaiver(check: "k8s.binaries", node: "cp-1", reason: "installed by install"))
        let all = try SiteInventory.PreflightWaiver.parse(commandLine: "hw.cpu-count=lab=container").get()
        #expect(all.node == nil && all.reason == "lab=container")
        for bad in ["hw.cpu-count", "hw.cpu-count=", "HW=x", "hw.cpu-count@Bad_Node=x", "cpu=x"] {
            #expect(throws: DiagnosticsError.self, "\(bad)") {
                try SiteInventory.PreflightWaiver.parse(commandLine: bad).get()
            }
        }
    }

    @Test func profileRoleLabelOptionAndDefaults() throws {
        let p = try Self.profile()
        #expect(p.kubernetes.roleLabels == .runai)
        #expect(p.kubernetes.dnsDomain == "cluster.local")
        let bad = Self.profileText.replacingOccurrences(of: "roleLabels: runai", with: "roleLabels: fancy")
        #expect(throws: DiagnosticsError.self) { try HardwareProfile.parse(text: bad, file: "t.yaml") }
    }
}
