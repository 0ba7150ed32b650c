import Foundation

/// Kubernetes resource quantities as whole numbers: CPU in millicores, memory and storage in bytes.
public enum Quantity {
    /// `500m`, `2`, `0.5` → millicores; nil when it is not a CPU quantity.
    public static func milliCPU(_ s: String) -> Int? {
        if s.hasSuffix("m") { return Int(s.dropLast()) }
        guard let d = Double(s), d >= 0 else { return nil }
        return Int((d * 1000).rounded())
    }

    /// `512Mi`, `4Gi`, `1Ti`, `100M`, `1G`, plain bytes → bytes; nil when it is not a memory quantity.
    public static func bytes(_ s: String) -> Int? {
        let units: [(String, Int)] = [
            ("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("Ti", 1 << 40),
            ("k", 1000), ("M", 1_000_000), ("G", 1_000_000_000), ("T", 1_000_000_000_000),
        ]
        for (suffix, factor) in units where s.hasSuffix(suffix) {
            guard let n = Int(s.dropLast(suffix.count)), n >= 0 else { return nil }
            return n * factor
        }
        return Int(s)
    }

    public static let gibibyte = 1 << 30
    public static let mebibyte = 1 << 20

    /// `1.5` CPU style text of millicores.
    public static func cpuText(_ milli: Int) -> String {
        milli % 1000 == 0 ? "\(milli / 1000)" : String(format: "%.2f", Double(milli) / 1000)
    }

    /// `3.5 GiB` style text of bytes.
    public static func memoryText(_ bytes: Int) -> String {
        let gib = Double(bytes) / Double(gibibyte)
        return gib == gib.rounded() ? "\(Int(gib)) GiB" : String(format: "%.2f GiB", gib)
    }
}
