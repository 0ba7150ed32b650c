import Foundation

/// Extracts an archive into a directory so that nothing is ever written outside it.
///
/// Every entry passes `EntryPolicy` first. Extraction goes into a fresh sibling directory
/// (`TARGET.partial-PID`) that is renamed onto TARGET only when every entry was accepted and written;
/// on any refusal or error the partial directory is removed, so a refused archive leaves no trace.
/// Files are created with `O_EXCL|O_NOFOLLOW` inside directories this extractor made itself.
public enum SafeExtractor {
    public struct Options: Sendable {
        public var allowSymlinks = false
        public var allowHardlinks = false
        public var maxEntrySize: Int64 = 1 << 40
        public var maxTotalSize: Int64 = 1 << 42
        public init(allowSymlinks: Bool = false, allowHardlinks: Bool = false) {
            self.allowSymlinks = allowSymlinks
            self.allowHardlinks = allowHardlinks
        }
    }

    /// Extracts `archive` (tar, optionally compressed) into `target`, which must not exist or be empty.
    /// Returns the extracted entry names.
    @discardableResult
    public static func extract(archive: String, to target: String, options: Options = Options()) throws(BundleError)
        -> [String]
    {
        if let existing = try? FileManager.default.contentsOfDirectory(atPath: target), !existing.isEmpty {
            throw .destinationExists(path: target)
        }
        let reader = try ArchiveReader(path: archive, formats: .anyArchive)
        // Pass 1: check every entry before writing anything.
        var policy = EntryPolicy(
            allowSymlinks: options.allowSymlinks, allowHardlinks: options.allowHardlinks,
            maxEntrySize: options.maxEntrySize)
        var refused: [BundleError.RefusedEntry] = []
        var total: Int64 = 0
        scan: while let e = try reader.next() {
            switch policy.check(e, archiveSize: isCompressed(archive) ? nil : reader.fileSize) {
            case .refuse(let reason):
                refused.append(.init(name: e.rawName, reason: reason))
                // An entry that lies about its size cannot be skipped: stop at the first such refusal.
                guard (try? reader.skip()) != nil else { break scan }
                continue
            case .accept: total += e.size
            }
            try reader.skip()
        }
        if total > options.maxTotalSize {
            refused.append(.init(name: "(archive)", reason: "declares \(total) bytes in all, over the limit"))
        }
        if !refused.isEmpty { throw .unsafeEntries(path: archive, entries: refused) }

        // Pass 2: write into a private partial directory, then rename.
        let partial = "\(target).partial-\(getpid())"
        try? FileManager.default.removeItem(atPath: partial)
        guard mkdir(partial, 0o755) == 0 else { throw .io(path: partial, reason: String(cString: strerror(errno))) }
        var names: [String] = []
        do {
            let second = try ArchiveReader(path: archive, formats: .anyArchive)
            var policy2 = EntryPolicy(
                allowSymlinks: options.allowSymlinks, allowHardlinks: options.allowHardlinks,
                maxEntrySize: options.maxEntrySize)
            while let e = try second.next() {
                // The archive is read again; a file that changed between passes is refused here too.
                guard case .accept(let name) = policy2.check(e, archiveSize: nil) else {
                    throw BundleError.unsafeEntries(
                        path: archive, entries: [.init(name: e.rawName, reason: "changed while reading")])
                }
                try write(entry: e, name: name, from: second, root: partial)
                names.append(name)
            }
            if FileManager.default.fileExists(atPath: target) {
                try? FileManager.default.removeItem(atPath: target)  // empty, checked above
            }
            guard rename(partial, target) == 0 else {
                throw BundleError.io(path: target, reason: String(cString: strerror(errno)))
            }
        } catch {
            try? FileManager.default.removeItem(atPath: partial)
            throw (error as? BundleError) ?? .io(path: target, reason: "\(error)")
        }
        return names
    }

    private static func isCompressed(_ path: String) -> Bool {
        guard let h = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? h.close() }
        let magic = (try? h.read(upToCount: 4)) ?? Data()
        return magic.starts(with: [0x1F, 0x8B]) || magic.starts(with: [0xFD, 0x37, 0x7A, 0x58])
            || magic.starts(with: [0x28, 0xB5, 0x2F, 0xFD])
    }

    private static func ensureParents(of name: String, root: String) throws(BundleError) {
        var dir = root
        for part in name.split(separator: "/").dropLast() {
            dir += "/" + part
            var st = stat()
            if lstat(dir, &st) == 0 {
                guard st.st_mode & S_IFMT == S_IFDIR else {
                    throw .io(path: dir, reason: "expected a directory")
                }
            } else if mkdir(dir, 0o755) != 0 {
                throw .io(path: dir, reason: String(cString: strerror(errno)))
            }
        }
    }

    private static func write(entry e: ArchiveEntry, name: String, from reader: ArchiveReader, root: String)
        throws(BundleError)
    {
        try ensureParents(of: name, root: root)
        let path = root + "/" + name
        switch e.kind {
        case .directory:
            var st = stat()
            if lstat(path, &st) != 0, mkdir(path, 0o755) != 0 {
                throw .io(path: path, reason: String(cString: strerror(errno)))
            }
        case .file:
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode_t(e.mode & 0o755))
            guard fd >= 0 else { throw .io(path: path, reason: String(cString: strerror(errno))) }
            defer { close(fd) }
            var written: Int64 = 0
            try reader.readData { (chunk) throws(BundleError) in
                var off = 0
                while off < chunk.count {
                    let n = Foundation.write(fd, chunk.baseAddress?.advanced(by: off), chunk.count - off)
                    if n < 0 { throw .io(path: path, reason: String(cString: strerror(errno))) }
                    off += n
                }
                written += Int64(chunk.count)
            }
            if written != e.size { throw .unreadableArchive(path: reader.label, reason: "entry \(name) is truncated") }
        case .symlink:
            guard symlink(e.linkTarget ?? "", path) == 0 else {
                throw .io(path: path, reason: String(cString: strerror(errno)))
            }
        case .hardlink:
            guard case .accept(let t) = EntryPolicy.normalize(e.linkTarget ?? ""), link(root + "/" + t, path) == 0
            else {
                throw .io(path: path, reason: String(cString: strerror(errno)))
            }
        case .special:
            throw .unsafeEntries(path: reader.label, entries: [.init(name: name, reason: "special file")])
        }
    }
}
