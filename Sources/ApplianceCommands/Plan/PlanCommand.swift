import ArgumentParser

struct PlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Show, resume or roll back the cluster's current or last operation.",
        subcommands: [PlanShow.self, PlanResume.self, PlanRollback.self, PlanUnlock.self, PlanPull.self])
}
