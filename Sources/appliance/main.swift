import ApplianceCommands

await ApplianceMain.main()
