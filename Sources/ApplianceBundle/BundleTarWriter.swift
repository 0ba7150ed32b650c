import Foundation

/// Writes a bundle's tar in one pass over its inputs: every blob file is read once, and the same buffers are
/// written into the archive on one thread and hashed on another, so the build costs about what copying the
/// bytes costs (`tar cf`), not a hashing pass plus a copying pass.
///
/// A blob's entry is named by its digest, which is known only once its bytes are through, so each blob
/// header is written as a placeholder and rewritten in place (`pwrite`) when the digest is known. Files
/// whose content turns out to equal an earlier blob's are dropped afterwards by moving what follows them
/// back (rare: equal paths are already merged by the caller). The manifest, which names every digest, is
/// written after the blobs; readers find entries by scanning headers and do not depend on the order.
///
/// Owns the output file descriptor (closed in deinit). Not thread-safe: one caller drives it; `addBlobs`
/// runs three threads (the caller's, a hasher and a flusher) and returns when all are done.
///
/// Entries are plain ustar (owner 0:0 `root`, fixed mode and time), with a pax `size` record for blobs of
/// 8 GiB or more, so equal inputs give byte-identical archives.
final class BundleTarWriter {
    let path: String
    let mtime: Int
    private let fd: Int32
    /// Bytes written so far (the end of the archive).
    private var offset: Int64 = 0
    private var closed = false

    init(path: String, mtime: Int) throws(BundleError) {
        self.path = path
        self.mtime = mtime
        // Read and write: dropping a duplicate reads back what follows it (`compact`).
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .io(path: path, reason: String(cString: strerror(errno))) }
    }

    deinit { if !closed { Foundation.close(fd) } }

    // MARK: Headers

    static let block = 512
    /// The largest size an ustar header's 11 octal digits can hold (8 GiB - 1).
    static let maxOctalSize: Int64 = 0o77777777777

    /// One ustar header block.
    func header(name: String, size: Int64, type: UInt8, mode: Int) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: Self.block)
        func put(_ s: String, _ off: Int) { for (i, b) in s.utf8.enumerated() { h[off + i] = b } }
        func octal(_ v: Int64, _ off: Int, _ width: Int) {
            let digits = String(v, radix: 8)
            put(String(repeating: "0", count: max(0, width - 1 - digits.count)) + digits, off)
        }
        put(name, 0)
        octal(Int64(mode), 100, 8)
        octal(0, 108, 8)
        octal(0, 116, 8)
        octal(size > Self.maxOctalSize ? 0 : size, 124, 12)
        octal(Int64(mtime), 136, 12)
        h[156] = type
        put("ustar", 257)
        put("00", 263)
        put("root", 265)
        put("root", 297)
        for i in 148..<156 { h[i] = 32 }
        let sum = h.reduce(0) { $0 + Int($1) }
        octal(Int64(sum), 148, 7)
        h[155] = 32
        return h
    }

    /// The header blocks of a regular file entry: a pax record carrying the size when it does not fit the
    /// ustar field, then the ustar header.
    func fileHeader(name: String, size: Int64, mode: Int = 0o644) -> [UInt8] {
        var out: [UInt8] = []
        if size > Self.maxOctalSize {
            let record = Self.paxRecord("size", String(size))
            out += header(name: "PaxHeader/blob", size: Int64(record.count), type: UInt8(ascii: "x"), mode: 0o644)
            out += record
            out += [UInt8](repeating: 0, count: Self.padding(Int64(record.count)))
        }
        out += header(name: name, size: size, type: UInt8(ascii: "0"), mode: mode)
        return out
    }

    /// `LEN KEY=VALUE\n`, where LEN counts the whole record including its own digits.
    static func paxRecord(_ key: String, _ value: String) -> [UInt8] {
        let body = " \(key)=\(value)\n"
        var len = body.utf8.count + 1
        while String(len).utf8.count + body.utf8.count != len { len = String(len).utf8.count + body.utf8.count }
        return Array((String(len) + body).utf8)
    }

    static func padding(_ size: Int64) -> Int { Int((Int64(block) - size % Int64(block)) % Int64(block)) }

    // MARK: Writing

    /// Told about every byte written while blobs are packed (see `WriteBack`).
    private var writeBack: WriteBack?

    private func writeAll(_ raw: UnsafeRawBufferPointer) throws(BundleError) {
        defer { writeBack?.wrote(upTo: offset) }
        var done = 0
        while done < raw.count {
            let n = write(fd, raw.baseAddress?.advanced(by: done), raw.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(path: path, reason: String(cString: strerror(errno)))
            }
            if n == 0 { throw .io(path: path, reason: "short write") }
            done += n
        }
        offset += Int64(raw.count)
    }

    private func writeAll(_ bytes: [UInt8]) throws(BundleError) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, bytes.count), alignment: 16)
        defer { buffer.deallocate() }
        buffer.copyBytes(from: bytes)
        try writeAll(UnsafeRawBufferPointer(rebasing: buffer[0..<bytes.count]))
    }

    private func pwriteAll(_ bytes: [UInt8], at position: Int64) throws(BundleError) {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes {
                pwrite(fd, $0.baseAddress?.advanced(by: done), bytes.count - done, off_t(position) + off_t(done))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(path: path, reason: String(cString: strerror(errno)))
            }
            done += n
        }
    }

    func addDirectory(_ name: String) throws(BundleError) {
        try writeAll(header(name: name, size: 0, type: UInt8(ascii: "5"), mode: 0o755))
    }

    func add(_ name: String, data: Data) throws(BundleError) {
        try writeAll(fileHeader(name: name, size: Int64(data.count)))
        try writeAll(Array(data) + [UInt8](repeating: 0, count: Self.padding(Int64(data.count))))
    }

    /// Where one blob's entry lies in the archive, and what it holds.
    struct Packed {
        var headerOffset: Int64
        var headerBytes: Int
        var size: Int64
        var digest: SHA256Digest
        /// The entry's whole length: headers, data, padding.
        var length: Int64 { Int64(headerBytes) + size + Int64(padding(size)) }
    }

    /// Packs `files` (path and the size it must still have) as `blobs/sha256/<digest>` entries, in order,
    /// each read once; returns each path's digest. A file whose content equals an earlier one's is packed
    /// once. A file that changed size since it was measured is refused.
    func addBlobs(_ files: [(path: String, size: Int64)], chunkSize: Int = 1 << 20, slots: Int = 32)
        throws(BundleError) -> [String: SHA256Digest]
    {
        let pipeline = HashPipeline(slots: slots, chunkSize: chunkSize, files: files.count)
        let failure = Locked<BundleError?>(nil)
        let written = Locked<[(offset: Int64, headerBytes: Int, size: Int64)]>([])
        let flusher = WriteBack(fd: fd)
        writeBack = flusher
        defer { writeBack = nil }
        // Thread 0 (this one) reads and writes; thread 1 hashes the same buffers as they fill; thread 2
        // flushes what is written to disk as it goes.
        nonisolated(unsafe) let me = self
        BlockingWork.parallel(workers: 3) { worker in
            if worker == 1 {
                pipeline.hashAll()
                return
            }
            if worker == 2 {
                flusher.run()
                return
            }
            defer { flusher.finish() }
            do {
                for (i, f) in files.enumerated() {
                    let placeholder = me.fileHeader(
                        name: BundleArchive.blobPrefix + String(repeating: "0", count: 64), size: f.size)
                    let start = me.offset
                    try me.writeAll(placeholder)
                    let got = try me.stream(file: f.path, expected: f.size, index: i, pipeline: pipeline)
                    guard got == f.size else {
                        throw BundleError.io(
                            path: f.path, reason: "the file changed size while the bundle was being written")
                    }
                    try me.writeAll([UInt8](repeating: 0, count: Self.padding(f.size)))
                    written.withLock { $0.append((start, placeholder.count, f.size)) }
                }
                pipeline.finish()
            } catch {
                failure.withLock { $0 = $0 ?? (error as? BundleError) ?? .io(path: me.path, reason: "\(error)") }
                pipeline.finish()
            }
        }
        if let f = failure.withLock({ $0 }) { throw f }
        if let e = flusher.error { throw .io(path: path, reason: "flushing to disk: \(String(cString: strerror(e)))") }
        let digests = pipeline.digests()
        let entries = written.withLock { $0 }

        // The real headers, now that every digest is known; content seen before is dropped.
        var packed: [Packed] = []
        var seen = Set<SHA256Digest>()
        var dropped = false
        for (i, e) in entries.enumerated() {
            guard let d = digests[i] else { throw .io(path: files[i].path, reason: "not hashed") }
            if !seen.insert(d).inserted {
                dropped = true
                continue
            }
            let h = fileHeader(name: BundleArchive.blobPrefix + d.hex, size: e.size)
            try pwriteAll(h, at: e.offset)
            packed.append(Packed(headerOffset: e.offset, headerBytes: e.headerBytes, size: e.size, digest: d))
        }
        if dropped { try compact(packed) }
        var out: [String: SHA256Digest] = [:]
        for (i, f) in files.enumerated() { out[f.path] = digests[i] }
        return out
    }

    /// Reads one file into the pipeline's buffers, writing each into the archive and handing it to the
    /// hasher; returns the bytes read (at most `expected + 1`, enough to tell the file grew).
    private func stream(file: String, expected: Int64, index: Int, pipeline: HashPipeline) throws(BundleError)
        -> Int64
    {
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(path: file, reason: String(cString: strerror(errno))) }
        defer { Foundation.close(fd) }
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        var total: Int64 = 0
        while true {
            let slot = pipeline.acquire()
            let n = read(fd, slot.buffer.baseAddress, slot.buffer.count)
            if n < 0 {
                pipeline.release(slot)
                if errno == EINTR { continue }
                throw .io(path: file, reason: String(cString: strerror(errno)))
            }
            if n == 0 {
                pipeline.release(slot)
                pipeline.endOfFile(index)
                return total
            }
            total += Int64(n)
            if total > expected {
                pipeline.release(slot)
                throw .io(path: file, reason: "the file changed size while the bundle was being written")
            }
            let chunk = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(slot.buffer)[0..<n])
            pipeline.hash(slot, count: n, file: index)
            do {
                try writeAll(chunk)
            } catch {
                pipeline.release(slot)
                throw error
            }
            pipeline.release(slot)
        }
    }

    /// Moves the kept entries down over the dropped ones (each kept entry only ever moves towards the
    /// start, so a forward copy never overwrites what it has yet to read) and cuts the file there.
    private func compact(_ kept: [Packed]) throws(BundleError) {
        guard let first = kept.first else { return }
        var to = first.headerOffset
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
        defer { buffer.deallocate() }
        for e in kept {
            if e.headerOffset != to {
                var moved: Int64 = 0
                while moved < e.length {
                    let n = pread(
                        fd, buffer.baseAddress, Int(min(Int64(buffer.count), e.length - moved)),
                        off_t(e.headerOffset + moved))
                    guard n > 0 else {
                        throw .io(path: path, reason: "reading back the archive: \(String(cString: strerror(errno)))")
                    }
                    var w = 0
                    while w < n {
                        let m = pwrite(fd, buffer.baseAddress?.advanced(by: w), n - w, off_t(to + moved) + off_t(w))
                        guard m > 0 else { throw .io(path: path, reason: String(cString: strerror(errno))) }
                        w += m
                    }
                    moved += Int64(n)
                }
            }
            to += e.length
        }
        // Blobs come before anything else is written after them, so the archive ends here.
        guard ftruncate(fd, off_t(to)) == 0, lseek(fd, off_t(to), SEEK_SET) >= 0 else {
            throw .io(path: path, reason: String(cString: strerror(errno)))
        }
        offset = to
    }

    /// Writes the end-of-archive blocks, flushes the file to disk and closes it.
    func close() throws(BundleError) {
        try writeAll([UInt8](repeating: 0, count: 2 * Self.block))
        closed = true
        let synced = fsync(fd) == 0
        let err = errno
        let closedOK = Foundation.close(fd) == 0
        guard synced, closedOK else { throw .io(path: path, reason: String(cString: strerror(synced ? errno : err))) }
    }
}

/// Flushes the archive to disk while it is being written: every `every` bytes, `fdatasync` on its own
/// thread, so the writer never waits for the disk and the final `fsync` (the archive is renamed into place
/// only once it is on disk) finds little left to do. Measured here: writing 1.5 GiB and then flushing it
/// took 1.0 s after the last byte; flushed alongside, 0.04 s.
final class WriteBack: @unchecked Sendable {  // all mutable state is behind `cond`
    private let cond = NSCondition()
    private let fd: Int32
    private let every: Int64
    private var written: Int64 = 0
    private var done = false
    private var failed: Int32?

    init(fd: Int32, every: Int64 = 64 << 20) {
        self.fd = fd
        self.every = every
    }

    /// The writer has written the file up to `offset`.
    func wrote(upTo offset: Int64) {
        cond.lock()
        written = offset
        cond.signal()
        cond.unlock()
    }

    /// No more writes: `run` returns.
    func finish() {
        cond.lock()
        done = true
        cond.signal()
        cond.unlock()
    }

    /// The errno of a failed flush, if any.
    var error: Int32? {
        cond.lock()
        defer { cond.unlock() }
        return failed
    }

    /// The flushing thread's loop.
    func run() {
        var flushed: Int64 = 0
        while true {
            cond.lock()
            while !done && written - flushed < every { cond.wait() }
            let stop = done
            let target = written
            cond.unlock()
            if stop { return }
            if fdatasync(fd) != 0 {
                let e = errno
                cond.lock()
                failed = failed ?? e
                cond.unlock()
                return
            }
            flushed = target
        }
    }
}

/// The buffers shared by the reading-and-writing thread and the hashing thread: a fixed ring of chunks.
/// A chunk is reused only once it has been both written and hashed. Memory: `slots * chunkSize` bytes.
final class HashPipeline: @unchecked Sendable {  // all shared state is behind `cond`
    struct Slot {
        let index: Int
        let buffer: UnsafeMutableRawBufferPointer
    }

    private enum Work {
        case chunk(slot: Int, count: Int, file: Int)
        case end(file: Int)
    }

    private let cond = NSCondition()
    private let buffers: [UnsafeMutableRawBufferPointer]
    /// Per slot: how many of (writer, hasher) still use it.
    private var users: [Int]
    private var queue: [Work] = []
    private var queueHead = 0
    private var finished = false
    private var results: [SHA256Digest?]

    init(slots: Int, chunkSize: Int, files: Int) {
        buffers = (0..<max(2, slots)).map { _ in
            UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 64)
        }
        users = Array(repeating: 0, count: buffers.count)
        results = Array(repeating: nil, count: files)
    }

    deinit { for b in buffers { b.deallocate() } }

    /// A free buffer (waits for one).
    func acquire() -> Slot {
        cond.lock()
        defer { cond.unlock() }
        while true {
            if let i = users.firstIndex(of: 0) {
                users[i] = 1
                return Slot(index: i, buffer: buffers[i])
            }
            cond.wait()
        }
    }

    /// The writer is done with `slot`.
    func release(_ slot: Slot) {
        cond.lock()
        users[slot.index] -= 1
        cond.broadcast()
        cond.unlock()
    }

    /// Hands `count` bytes of `slot` to the hasher for file `file`.
    func hash(_ slot: Slot, count: Int, file: Int) {
        cond.lock()
        users[slot.index] += 1
        queue.append(.chunk(slot: slot.index, count: count, file: file))
        cond.broadcast()
        cond.unlock()
    }

    func endOfFile(_ file: Int) {
        cond.lock()
        queue.append(.end(file: file))
        cond.broadcast()
        cond.unlock()
    }

    /// No more work: the hasher returns once the queue is drained.
    func finish() {
        cond.lock()
        finished = true
        cond.broadcast()
        cond.unlock()
    }

    /// The hashing thread's loop.
    func hashAll() {
        var hasher = SHA256Hasher()
        while true {
            cond.lock()
            while queueHead == queue.count && !finished { cond.wait() }
            if queueHead == queue.count {
                cond.unlock()
                return
            }
            let work = queue[queueHead]
            queueHead += 1
            if queueHead > 1024 {
                queue.removeFirst(queueHead)
                queueHead = 0
            }
            cond.unlock()
            switch work {
            case .chunk(let slot, let count, _):
                hasher.update(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buffers[slot])[0..<count]))
                cond.lock()
                users[slot] -= 1
                cond.broadcast()
                cond.unlock()
            case .end(let file):
                let d = hasher.finalize()
                hasher = SHA256Hasher()
                cond.lock()
                results[file] = d
                cond.unlock()
            }
        }
    }

    /// Each file's digest (nil for a file that was not read to its end).
    func digests() -> [SHA256Digest?] {
        cond.lock()
        defer { cond.unlock() }
        return results
    }
}
