// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "appliance",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "appliance", targets: ["appliance"]),
        .executable(name: "appliance-labnode", targets: ["appliance-labnode"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        // Registry PKI (install): X.509 issuing with P-256 keys, in memory.
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"4.0.0"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        // ApplianceBundle: the OCI registry client (issue 15).
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        // The lab's API server stand-in serves HTTP/2 (ALPN h2), which real kubectl prefers over TLS.
        .package(url: "https://github.com/apple/swift-nio-http2", from: "1.46.0"),
    ],
    targets: [
        // System libraries (Debian: libarchive-dev, libssl-dev), each with a small shim.h.
        .systemLibrary(
            name: "CArchive", pkgConfig: "libarchive",
            providers: [.apt(["libarchive-dev"])]),
        .systemLibrary(
            name: "CCrypto", pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]),
        .systemLibrary(
            name: "CLibSSH2", pkgConfig: "libssh2",
            providers: [.apt(["libssh2-1-dev"])]),
        // The journal's embedded database (Debian: libsqlite3-dev); imported only inside AppliancePlan.
        .systemLibrary(
            name: "CSQLite", pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]),

        .target(
            name: "ApplianceModel",
            dependencies: [.product(name: "Yams", package: "Yams")],
            exclude: ["README.md"]),
        .target(
            name: "ApplianceBundle",
            dependencies: [
                "CArchive", "CCrypto", "ApplianceModel",
                .product(name: "Logging", package: "swift-log"),
                // The OCI registry client, and values.yaml scans of `bundle build --check` (issue 15).
                .product(name: "Yams", package: "Yams"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            exclude: ["README.md"]),
        .target(
            name: "ApplianceSSH",
            dependencies: ["CLibSSH2", .product(name: "Logging", package: "swift-log")],
            exclude: ["README.md"]),
        .target(
            name: "ApplianceCluster",
            dependencies: [
                "ApplianceModel", "ApplianceBundle", "ApplianceSSH", "AppliancePlan",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            exclude: ["Render/README.md"]),
        // The local rehearsal cluster (systemd-nspawn nodes); product modules never import it.
        .target(
            name: "ApplianceLab",
            dependencies: ["ApplianceModel", "ApplianceBundle", .product(name: "Logging", package: "swift-log")],
            exclude: ["README.md"]),
        .target(
            name: "AppliancePreflight",
            dependencies: ["ApplianceModel", "ApplianceSSH"],
            exclude: ["README.md"]),
        // The platform control plane as data (issue 13): values rendered from profile + site, queue objects,
        // the capacity and quota check, the site certificate check. Pure: no SSH, no cluster.
        .target(
            name: "AppliancePlatform",
            dependencies: [
                "ApplianceModel", .product(name: "Yams", package: "Yams"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            exclude: ["README.md"]),
        // Every operation (stage, install, ...) as one plan; the only place that knows an operation's order.
        .target(
            name: "ApplianceOperations",
            dependencies: [
                "ApplianceModel", "ApplianceBundle", "AppliancePreflight", "ApplianceSSH", "ApplianceCluster",
                "AppliancePlan", "AppliancePlatform", .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["README.md"]),
        // appliance support-bundle: collectors, streaming redaction, the bundle's analyzers (issue 16).
        .target(
            name: "ApplianceSupport",
            dependencies: [
                "ApplianceModel", "ApplianceBundle", "ApplianceSSH", "ApplianceCluster", "AppliancePlan",
                "AppliancePreflight", "ApplianceOperations", .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["README.md"]),
        .target(
            name: "ApplianceCommands",
            dependencies: [
                "ApplianceModel", "ApplianceBundle", "AppliancePreflight", "ApplianceSSH", "ApplianceCluster",
                "AppliancePlan", "ApplianceLab", "ApplianceOperations", "AppliancePlatform",
                "ApplianceSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["README.md"]),
        .target(
            name: "AppliancePlan",
            dependencies: ["CSQLite", .product(name: "Logging", package: "swift-log")],
            exclude: ["README.md"]),
        .executableTarget(name: "appliance", dependencies: ["ApplianceCommands"]),
        // The lab's stand-ins for kubeadm, kubelet, kubectl, helm, nvidia-smi, dcgmi, fabric manager.
        // Its API server and clients speak HTTPS with client certificates on SwiftNIO + swift-nio-ssl (BoringSSL,
        // statically linked, so the binary still runs in nodes without a Swift runtime or libssl).
        .target(
            name: "ApplianceLabNode",
            dependencies: [
                "ApplianceModel", .product(name: "Yams", package: "Yams"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                // Client certificates are checked per connection (401 for one the cluster CA did not sign).
                .product(name: "X509", package: "swift-certificates"),
                // The S3 gateway model's SigV4 (HMAC-SHA256) and ETags (MD5).
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            exclude: ["README.md"]),
        .executableTarget(name: "appliance-labnode", dependencies: ["ApplianceLabNode"]),
        // Test helper: runs a small plan with side-effect markers so tests can kill it at random points.
        .executableTarget(
            name: "plan-crash-harness",
            dependencies: ["AppliancePlan", .product(name: "Logging", package: "swift-log")]),

        .testTarget(name: "ApplianceModelTests", dependencies: ["ApplianceModel"]),
        .testTarget(
            name: "AppliancePlatformTests",
            dependencies: [
                "AppliancePlatform", "ApplianceModel", .product(name: "Yams", package: "Yams"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            // Expected values files (read from the source tree).
            exclude: ["Golden"]),
        .testTarget(
            name: "AppliancePreflightTests",
            dependencies: ["AppliancePreflight", "ApplianceModel"]),
        .testTarget(
            name: "ApplianceBundleTests",
            dependencies: ["ApplianceBundle", "ApplianceModel", .product(name: "Logging", package: "swift-log")],
            exclude: ["CycloneDX"]),
        .testTarget(
            name: "AppliancePlanTests",
            // The harness is a dependency so that `swift test` builds it before the crash tests run.
            dependencies: [
                "AppliancePlan", "plan-crash-harness", .product(name: "Logging", package: "swift-log"),
            ]),
        // Real OpenSSH servers on loopback for the tests of every module that talks to nodes.
        .target(
            name: "ApplianceTestSupport", dependencies: ["ApplianceSSH"], path: "Tests/ApplianceTestSupport"),
        .testTarget(name: "ApplianceSSHTests", dependencies: ["ApplianceSSH", "ApplianceTestSupport"]),
        .testTarget(
            name: "ApplianceClusterTests",
            dependencies: [
                "ApplianceCluster", "ApplianceBundle", "ApplianceSSH", "ApplianceModel", "AppliancePlan",
                "ApplianceTestSupport", .product(name: "Yams", package: "Yams"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            // Expected documents of the renderers; read from the source tree (see GoldenFile.swift).
            exclude: ["Golden"]),
        .testTarget(
            name: "ApplianceLabNodeTests",
            dependencies: ["ApplianceLabNode", "ApplianceModel", "appliance-labnode"]),
        // The stand-ins' output and the real captures, parsed by the same preflight parsers (issue 7).
        .testTarget(
            name: "LabConsistencyTests",
            // ApplianceLab, AppliancePlatform, Yams: the lab charts rendered with the product's values (issue 13).
            dependencies: [
                "ApplianceLabNode", "AppliancePreflight", "ApplianceModel", "ApplianceLab", "AppliancePlatform",
                .product(name: "Yams", package: "Yams"),
            ]),
        .testTarget(
            name: "ApplianceLabTests",
            // AppliancePreflight: the stand-ins' output in lab nodes is read with the product's own parsers.
            // ApplianceOperations, AppliancePlatform: the smoke tests run by the product's runner in a lab cluster.
            dependencies: [
                "ApplianceLab", "ApplianceModel", "AppliancePreflight", "ApplianceBundle", "AppliancePlan",
                "ApplianceOperations", "AppliancePlatform",
            ]),
        .testTarget(
            name: "ApplianceSupportTests",
            dependencies: ["ApplianceSupport", "ApplianceBundle", "ApplianceModel", "ApplianceTestSupport"]),
        .testTarget(
            name: "ApplianceCommandsTests",
            dependencies: ["ApplianceCommands", "ApplianceOperations", "ApplianceTestSupport"],
            // Expected `appliance status` reports (read from the source tree).
            exclude: ["Golden"]),
    ],
    swiftLanguageModes: [.v6]
)
