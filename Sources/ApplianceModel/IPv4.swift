/// An IPv4 address as a 32-bit number, parsed from and printed as dotted quads (`10.0.0.11`).
///
/// Parsing is strict: four decimal octets of at most three digits, each at most 255, no blanks and no
/// leading `+`. (Leading zeros are accepted and read as decimal, like Go's and Kubernetes' parsers before
/// 1.22 did; the printed form has none.)
public struct IPv4Address: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var value: UInt32

    public init(_ value: UInt32) { self.value = value }

    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var v: UInt32 = 0
        for p in parts {
            guard (1...3).contains(p.count), p.allSatisfy({ $0.isASCII && $0.isNumber }), let o = UInt32(p), o <= 255
            else { return nil }
            v = v << 8 | o
        }
        value = v
    }

    public var description: String {
        "\(value >> 24 & 255).\(value >> 16 & 255).\(value >> 8 & 255).\(value & 255)"
    }

    public static func < (a: IPv4Address, b: IPv4Address) -> Bool { a.value < b.value }
}

/// An IPv4 network in CIDR notation (`10.244.0.0/16`).
///
/// `address` is kept as written so messages can quote the operator's text; `network` is the address with the
/// host bits cleared. Two networks overlap when one contains the other's first address (CIDR blocks are either
/// nested or disjoint).
public struct IPv4CIDR: Sendable, Hashable, CustomStringConvertible {
    public var address: IPv4Address
    public var prefixLength: Int

    public init(address: IPv4Address, prefixLength: Int) {
        precondition((0...32).contains(prefixLength), "an IPv4 prefix length is 0...32")
        self.address = address
        self.prefixLength = prefixLength
    }

    /// Parses `a.b.c.d/n`; nil for anything else (an address without `/n` is not a CIDR).
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let a = IPv4Address(parts[0]), (1...2).contains(parts[1].count),
            parts[1].allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(parts[1]), (0...32).contains(n)
        else { return nil }
        address = a
        prefixLength = n
    }

    public var mask: UInt32 { prefixLength == 0 ? 0 : ~UInt32(0) << UInt32(32 - prefixLength) }
    /// The first address of the block (host bits cleared).
    public var network: IPv4Address { IPv4Address(address.value & mask) }
    /// The last address of the block.
    public var last: IPv4Address { IPv4Address(address.value & mask | ~mask) }
    /// Whether the written address has host bits set (`10.244.1.0/16`); tools differ on whether they accept it.
    public var hasHostBits: Bool { address.value & ~mask != 0 }
    /// Number of addresses in the block.
    public var size: UInt64 { UInt64(1) << UInt64(32 - prefixLength) }

    public func contains(_ a: IPv4Address) -> Bool { a.value & mask == address.value & mask }

    public func overlaps(_ other: IPv4CIDR) -> Bool {
        network <= other.last && other.network <= last
    }

    /// The n-th address of the block (0 is the network address); nil past its end.
    public func address(at offset: UInt32) -> IPv4Address? {
        guard UInt64(offset) < size else { return nil }
        return IPv4Address(network.value + offset)
    }

    public var description: String { "\(address)/\(prefixLength)" }
}
