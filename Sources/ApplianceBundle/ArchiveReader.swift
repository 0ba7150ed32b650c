internal import CArchive
import Foundation

/// One entry header as libarchive reports it, before any safety decision.
public struct ArchiveEntry: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case file, directory, symlink, hardlink
        /// Block or character device, FIFO, socket: never accepted.
        case special(String)
    }

    /// The name exactly as stored.
    public var rawName: String
    public var kind: Kind
    /// Declared data size (0 for non-files).
    public var size: Int64
    public var linkTarget: String?
    public var mode: UInt32
    /// Offset of the entry's header in the archive (for messages and bounds checks).
    public var headerOffset: Int64
}

/// Reads archives through libarchive, one entry at a time, with bounded memory.
///
/// Owns one `struct archive *`, freed in deinit. Not thread-safe: one reader per thread; parallel
/// verification opens one reader per worker. Every libarchive failure is turned into a `BundleError`
/// with `archive_error_string` read right after the failing call.
final class ArchiveReader {
    private let handle: OpaquePointer
    let label: String
    /// Total bytes of the underlying file, when reading a file (used to refuse absurd declared sizes).
    let fileSize: Int64?
    private var memory: UnsafeMutableRawBufferPointer?
    /// One data buffer per reader, reused for every entry (keeps memory flat over thousands of blobs).
    private let chunkBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)

    enum Formats { case tarOnly, anyArchive }

    /// Opens a file. `tarOnly` with no decompression filter is how bundles are read.
    init(path: String, formats: Formats = .tarOnly, blockSize: Int = 1 << 20) throws(BundleError) {
        guard let a = archive_read_new() else { throw .unreadableArchive(path: path, reason: "out of memory") }
        handle = a
        label = path
        var st = stat()
        fileSize = stat(path, &st) == 0 ? Int64(st.st_size) : nil
        configure(formats)
        if archive_read_open_filename(a, path, blockSize) != carchive_ok() {
            // All stored properties are set, so deinit runs and frees the handle.
            let reason = Self.errorString(a)
            if access(path, R_OK) != 0 { throw .io(path: path, reason: String(cString: strerror(errno))) }
            throw .unreadableArchive(path: path, reason: reason)
        }
    }

    /// Reads from a copy of `data` (small archives: chart packages, deb control members).
    init(data: Data, label: String, formats: Formats = .anyArchive) throws(BundleError) {
        guard let a = archive_read_new() else { throw .unreadableArchive(path: label, reason: "out of memory") }
        handle = a
        self.label = label
        fileSize = Int64(data.count)
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: max(data.count, 1), alignment: 16)
        data.copyBytes(to: buf)
        memory = buf
        configure(formats)
        if archive_read_open_memory(a, buf.baseAddress, data.count) != carchive_ok() {
            let reason = Self.errorString(a)
            throw .unreadableArchive(path: label, reason: reason)
        }
    }

    deinit {
        archive_read_free(handle)
        memory?.deallocate()
        chunkBuffer.deallocate()
    }

    private func configure(_ formats: Formats) {
        switch formats {
        case .tarOnly:
            archive_read_support_format_tar(handle)
        case .anyArchive:
            archive_read_support_filter_all(handle)
            archive_read_support_format_tar(handle)
            archive_read_support_format_ar(handle)
        }
    }

    private static func errorString(_ a: OpaquePointer) -> String {
        archive_error_string(a).map { String(cString: $0) } ?? "unknown libarchive error (errno \(archive_errno(a)))"
    }

    /// The next entry header, or nil at the end of the archive.
    func next() throws(BundleError) -> ArchiveEntry? {
        var entry: OpaquePointer?
        let rc = archive_read_next_header(handle, &entry)
        if rc == carchive_eof() { return nil }
        if rc != carchive_ok() && rc != carchive_warn() || entry == nil {
            throw .unreadableArchive(path: label, reason: Self.errorString(handle))
        }
        guard let entry else { return nil }
        let name = archive_entry_pathname(entry).map { String(cString: $0) } ?? ""
        let type = archive_entry_filetype(entry)
        let hardlink = archive_entry_hardlink(entry).map { String(cString: $0) }
        let symlink = archive_entry_symlink(entry).map { String(cString: $0) }
        let kind: ArchiveEntry.Kind
        if let _ = hardlink {
            kind = .hardlink
        } else {
            switch type & 0o170000 {
            case 0o100000: kind = .file
            case 0o040000: kind = .directory
            case 0o120000: kind = .symlink
            case 0o060000: kind = .special("block device")
            case 0o020000: kind = .special("character device")
            case 0o010000: kind = .special("FIFO")
            case 0o140000: kind = .special("socket")
            default: kind = .special("unknown type \(String(type, radix: 8))")
            }
        }
        return ArchiveEntry(
            rawName: name, kind: kind, size: archive_entry_size_is_set(entry) != 0 ? archive_entry_size(entry) : 0,
            linkTarget: hardlink ?? symlink, mode: UInt32(archive_entry_perm(entry)),
            headerOffset: archive_read_header_position(handle))
    }

    /// Streams the current entry's data in chunks of up to 1 MiB. The chunk is only valid during `body`.
    func readData(_ body: (UnsafeRawBufferPointer) throws(BundleError) -> Void) throws(BundleError) {
        let buf = chunkBuffer
        while true {
            let n = archive_read_data(handle, buf.baseAddress, buf.count)
            if n < 0 { throw .unreadableArchive(path: label, reason: Self.errorString(handle)) }
            if n == 0 { return }
            try body(UnsafeRawBufferPointer(rebasing: buf[0..<n]))
        }
    }

    /// Reads the current entry fully; refuses more than `limit` bytes.
    func readAll(limit: Int) throws(BundleError) -> Data {
        var out = Data()
        try readData { (chunk) throws(BundleError) in
            if out.count + chunk.count > limit {
                throw .unreadableArchive(path: label, reason: "entry larger than \(limit) bytes")
            }
            out.append(contentsOf: chunk)
        }
        return out
    }

    /// Skips the current entry's data (seeks when the file allows).
    func skip() throws(BundleError) {
        if archive_read_data_skip(handle) != carchive_ok() {
            throw .unreadableArchive(path: label, reason: Self.errorString(handle))
        }
    }
}

/// The outcome of checking one name or entry: its normalized name, or why it is refused.
enum EntryVerdict: Equatable {
    case accept(String)
    case refuse(String)
}

/// The safety rules every archive read by appliance goes through, before any byte is used or written.
struct EntryPolicy {
    var allowSymlinks = false
    var allowHardlinks = false
    /// Refuse entries that declare more than this (absurd sizes), in addition to the bytes actually left.
    var maxEntrySize: Int64 = 1 << 40

    private var seen: Set<String> = []
    private var files: Set<String> = []
    private var links: Set<String> = []

    init(allowSymlinks: Bool = false, allowHardlinks: Bool = false, maxEntrySize: Int64 = 1 << 40) {
        self.allowSymlinks = allowSymlinks
        self.allowHardlinks = allowHardlinks
        self.maxEntrySize = maxEntrySize
    }

    /// A path made of plain components, or the reason it is refused.
    static func normalize(_ raw: String) -> EntryVerdict {
        if raw.isEmpty { return .refuse("empty name") }
        if raw.utf8.contains(0) { return .refuse("NUL byte in name") }
        if raw.hasPrefix("/") { return .refuse("absolute path") }
        var parts: [Substring] = []
        for part in raw.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." { return .refuse("path traversal ('..')") }
            parts.append(part)
        }
        if parts.isEmpty { return .refuse("empty name") }
        return .accept(parts.joined(separator: "/"))
    }

    /// Checks one entry; returns its normalized name or the reason for refusal.
    mutating func check(_ e: ArchiveEntry, archiveSize: Int64?) -> EntryVerdict {
        let name: String
        switch Self.normalize(e.rawName) {
        case .refuse(let reason): return .refuse(reason)
        case .accept(let n): name = n
        }
        if seen.contains(name) { return .refuse("duplicate name") }
        // No entry may live under a symlink: that is how extraction escapes its directory.
        var prefix = ""
        for part in name.split(separator: "/").dropLast() {
            prefix = prefix.isEmpty ? String(part) : prefix + "/" + part
            if links.contains(prefix) { return .refuse("path goes through the symbolic link '\(prefix)'") }
            if files.contains(prefix) { return .refuse("path goes through the file '\(prefix)'") }
        }
        switch e.kind {
        case .special(let what):
            return .refuse("\(what) entries are not allowed")
        case .symlink:
            guard allowSymlinks else { return .refuse("symbolic links are not allowed here") }
            guard let target = e.linkTarget, !target.hasPrefix("/") else {
                return .refuse("symbolic link to an absolute path ('\(e.linkTarget ?? "")')")
            }
            let base = name.split(separator: "/").dropLast().joined(separator: "/")
            if case .refuse = Self.normalize(base.isEmpty ? target : base + "/" + target),
                Self.escapes(base: base, target: target)
            {
                return .refuse("symbolic link escapes the archive ('\(target)')")
            }
            if Self.escapes(base: base, target: target) {
                return .refuse("symbolic link escapes the archive ('\(target)')")
            }
            links.insert(name)
        case .hardlink:
            guard allowHardlinks else { return .refuse("hard links are not allowed here") }
            guard let target = e.linkTarget, case .accept(let t) = Self.normalize(target), files.contains(t) else {
                return .refuse("hard link to a file outside the archive ('\(e.linkTarget ?? "")')")
            }
        case .file:
            if e.size < 0 || e.size > maxEntrySize {
                return .refuse("declares an absurd size of \(e.size) bytes")
            }
            if let archiveSize, e.headerOffset + 512 + e.size > archiveSize {
                return .refuse(
                    "declares \(e.size) bytes but the archive ends \(max(0, archiveSize - e.headerOffset - 512)) bytes later"
                )
            }
            files.insert(name)
        case .directory:
            break
        }
        seen.insert(name)
        return .accept(name)
    }

    /// Whether `target`, taken relative to directory `base`, climbs above the archive root.
    static func escapes(base: String, target: String) -> Bool {
        var depth = base.split(separator: "/").count
        for part in target.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." {
                depth -= 1
                if depth < 0 { return true }
            } else {
                depth += 1
            }
        }
        return false
    }
}
