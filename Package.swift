// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "appliance",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "appliance", targets: ["appliance"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // System libraries (Debian: libarchive-dev, libssl-dev), each with a small shim.h.
        .systemLibrary(
            name: "CArchive", pkgConfig: "libarchive",
            providers: [.apt(["libarchive-dev"])]),
        .systemLibrary(
            name: "CCrypto", pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]),

        .target(
            name: "ApplianceModel",
            dependencies: [.product(name: "Yams", package: "Yams")]),
        .target(
            name: "ApplianceBundle",
            dependencies: [
                "CArchive", "CCrypto", "ApplianceModel",
                .product(name: "Logging", package: "swift-log"),
            ]),
        // The local lab (DESIGN section 7). Product modules never import it.
        .target(
            name: "ApplianceLab",
            dependencies: [
                "ApplianceModel",
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["README.md"]),
        .target(
            name: "ApplianceCommands",
            dependencies: [
                "ApplianceModel", "ApplianceBundle", "ApplianceLab",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(name: "appliance", dependencies: ["ApplianceCommands"]),

        .testTarget(name: "ApplianceModelTests", dependencies: ["ApplianceModel"]),
        .testTarget(
            name: "ApplianceBundleTests",
            dependencies: ["ApplianceBundle", "ApplianceModel"]),
        .testTarget(
            name: "ApplianceLabTests",
            dependencies: ["ApplianceLab", "ApplianceModel"]),
        .testTarget(
            name: "ApplianceCommandsTests",
            dependencies: ["ApplianceCommands"]),
    ],
    swiftLanguageModes: [.v6]
)
