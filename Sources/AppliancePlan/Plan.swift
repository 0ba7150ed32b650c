import Foundation

/// What the executor does when a step fails for good (after its retries).
public enum FailurePolicy: String, Sendable, Hashable, Codable {
    /// Launch nothing new; steps in flight finish; the rest are reported skipped.
    case stopAll
    /// Keep going where possible: only the (transitive) dependents of a failed step are skipped.
    case continueOtherNodes
}

/// A validated graph of steps: names unique, dependencies known, no cycles.
public struct Plan: Sendable {
    public let steps: [Step]
    public let failurePolicy: FailurePolicy
    /// The most steps in flight at once, across all nodes (at least 1).
    public let maxParallelism: Int

    let index: [String: Int]

    public init(steps: [Step], failurePolicy: FailurePolicy = .stopAll, maxParallelism: Int = 8) throws {
        var index: [String: Int] = [:]
        for (i, step) in steps.enumerated() {
            if step.name.isEmpty || step.name.contains(where: { $0.isNewline }) {
                throw PlanError.invalidStep(step: step.name, reason: "a name must be one non-empty line")
            }
            if index[step.name] != nil { throw PlanError.duplicateStep(step.name) }
            index[step.name] = i
        }
        for step in steps {
            for dep in step.dependencies {
                if index[dep] == nil { throw PlanError.unknownDependency(step: step.name, dependency: dep) }
                if dep == step.name { throw PlanError.dependencyCycle([step.name, step.name]) }
            }
        }
        self.steps = steps
        self.failurePolicy = failurePolicy
        self.maxParallelism = max(1, maxParallelism)
        self.index = index
        if let cycle = findCycle() { throw PlanError.dependencyCycle(cycle) }
    }

    public subscript(name: String) -> Step? { index[name].map { steps[$0] } }

    /// Step names in an order where every step follows its dependencies (stable: plan order first).
    public var topologicalOrder: [String] {
        var remaining = steps.map { Set($0.dependencies).count }
        var dependents = Array(repeating: [Int](), count: steps.count)
        for (i, s) in steps.enumerated() {
            for d in Set(s.dependencies) { if let j = index[d] { dependents[j].append(i) } }
        }
        var order: [String] = []
        var ready = (0..<steps.count).filter { remaining[$0] == 0 }
        while !ready.isEmpty {
            ready.sort()
            let i = ready.removeFirst()
            order.append(steps[i].name)
            for j in dependents[i] {
                remaining[j] -= 1
                if remaining[j] == 0 { ready.append(j) }
            }
        }
        return order
    }

    /// Steps depending on `name` directly or transitively.
    public func dependents(of name: String) -> Set<String> {
        var result = Set<String>()
        var frontier = [name]
        while let current = frontier.popLast() {
            for s in steps where s.dependencies.contains(current) && !result.contains(s.name) {
                result.insert(s.name)
                frontier.append(s.name)
            }
        }
        return result
    }

    private func findCycle() -> [String]? {
        // 0 = unvisited, 1 = on stack, 2 = done. Iterative DFS so deep plans cannot overflow the stack.
        var color = Array(repeating: 0, count: steps.count)
        for root in steps.indices where color[root] == 0 {
            var stack: [(Int, Int)] = [(root, 0)]
            color[root] = 1
            while let (node, next) = stack.last {
                let deps = steps[node].dependencies
                if next < deps.count {
                    stack[stack.count - 1].1 += 1
                    guard let d = index[deps[next]] else { continue }
                    if color[d] == 1 {
                        let names = stack.map { steps[$0.0].name }
                        let from = names.firstIndex(of: steps[d].name) ?? 0
                        return Array(names[from...]) + [steps[d].name]
                    }
                    if color[d] == 0 {
                        color[d] = 1
                        stack.append((d, 0))
                    }
                } else {
                    color[node] = 2
                    stack.removeLast()
                }
            }
        }
        return nil
    }
}

// MARK: - Dry run

extension Plan {
    /// A serialisable description of the plan for `--dry-run --format json`.
    public struct Description: Codable, Sendable, Equatable {
        public struct StepDescription: Codable, Sendable, Equatable {
            public var name: String
            public var node: String?
            public var dependencies: [String]
            public var summary: String
            public var concurrentOnNode: Bool
            public var timeoutSeconds: Double?
            public var attempts: Int
            public var hasUndo: Bool
        }
        public var failurePolicy: FailurePolicy
        public var maxParallelism: Int
        public var steps: [StepDescription]
    }

    public var planDescription: Description {
        Description(
            failurePolicy: failurePolicy, maxParallelism: maxParallelism,
            steps: steps.map { s in
                Description.StepDescription(
                    name: s.name, node: s.target.node, dependencies: s.dependencies, summary: s.summary,
                    concurrentOnNode: s.concurrentOnNode,
                    timeoutSeconds: s.timeout.map {
                        Double($0.components.seconds) + Double($0.components.attoseconds) / 1e18
                    },
                    attempts: s.retry.attempts, hasUndo: s.undo != nil)
            })
    }

    /// The dry run as JSON (sorted keys, stable for tests and tools). Nothing executes.
    public func renderJSON() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(planDescription), as: UTF8.self)
    }

    /// The dry run as a text tree: steps grouped by node (cluster first, then nodes by name), each
    /// with its dependencies and policy. Nothing executes.
    public func render() -> String {
        var groups: [StepTarget: [Step]] = [:]
        var order: [StepTarget] = []
        for s in steps {
            if groups[s.target] == nil { order.append(s.target) }
            groups[s.target, default: []].append(s)
        }
        order.sort { a, b in
            switch (a, b) {
            case (.cluster, .node): return true
            case (.node, .cluster): return false
            default: return a.description < b.description
            }
        }
        let nodes = order.filter { $0 != .cluster }.count
        let policy = failurePolicy == .stopAll ? "stop all" : "continue other nodes"
        var out = "plan: \(steps.count) step\(steps.count == 1 ? "" : "s") on \(nodes) node\(nodes == 1 ? "" : "s")"
        if groups[.cluster] != nil { out += " and the cluster" }
        out += ", at most \(maxParallelism) at once, on failure: \(policy)\n"
        for target in order {
            out += "\(target)\n"
            let list = groups[target] ?? []
            for (i, s) in list.enumerated() {
                let last = i == list.count - 1
                out += (last ? "└─ " : "├─ ") + s.name
                if !s.summary.isEmpty { out += "  \(s.summary)" }
                var flags: [String] = []
                if s.concurrentOnNode { flags.append("concurrent") }
                if let t = s.timeout { flags.append("timeout \(PlanError.format(t))") }
                if s.retry.attempts > 1 { flags.append("\(s.retry.attempts) attempts") }
                if s.undo != nil { flags.append("undo") }
                if !flags.isEmpty { out += "  [\(flags.joined(separator: ", "))]" }
                out += "\n"
                if !s.dependencies.isEmpty {
                    out += (last ? "   " : "│  ") + "   after: \(s.dependencies.joined(separator: ", "))\n"
                }
            }
        }
        return out
    }
}
