/// How to start one worker of a function version: which Deno, runner and entry module, what
/// the function may read, reach and see, and its limits.
public struct WorkerLaunch: Sendable {
    /// The `deno` executable.
    public var denoPath: String
    /// `Plugins/Edge/Runtime/runner.js` (the plugin's resource).
    public var runnerPath: String
    /// The function version's folder: the only place it may read.
    public var functionDirectory: String
    /// The entry module (inside `functionDirectory`).
    public var entryPath: String
    /// Deno's cache (`DENO_DIR`).
    public var denoDirectory: String
    /// Hosts the function may connect to (`--allow-net`); empty: none.
    public var allowNet: [String]
    /// Variables the function sees (its secrets); nothing else of the kernel's environment crosses.
    public var environment: [String: String]
    /// The version's limits.
    public var limits: EdgeLimits
    /// How long a worker may take to import the module and answer READY.
    public var startTimeoutSeconds: Double
    /// The unprivileged account the worker runs as (uid, gid), when the kernel runs as root;
    /// nil: as the kernel's own user.
    public var account: (uid: UInt32, gid: UInt32)?

    /// A launch description.
    public init(
        denoPath: String, runnerPath: String, functionDirectory: String, entryPath: String, denoDirectory: String,
        allowNet: [String] = [], environment: [String: String] = [:], limits: EdgeLimits = EdgeLimits(), startTimeoutSeconds: Double = 10
    ) {
        self.denoPath = denoPath
        self.runnerPath = runnerPath
        self.functionDirectory = functionDirectory
        self.entryPath = entryPath
        self.denoDirectory = denoDirectory
        self.allowNet = allowNet
        self.environment = environment
        self.limits = limits
        self.startTimeoutSeconds = startTimeoutSeconds
    }

    /// What to execute: `deno`, or `setpriv` switching to ``account`` first (util-linux,
    /// present on Debian: posix_spawn cannot change the user itself).
    public var executable: String { account == nil ? denoPath : Self.setpriv }

    /// `executable`'s arguments.
    public var command: [String] {
        guard let account else { return arguments }
        return ["--reuid=\(account.uid)", "--regid=\(account.gid)", "--clear-groups", "--", denoPath] + arguments
    }

    /// util-linux's setpriv.
    public static let setpriv = "/usr/bin/setpriv"

    /// `deno`'s arguments (after the executable).
    public var arguments: [String] {
        // --no-remote --no-npm: a dynamic import of https:, npm: or jsr: fails at once instead
        // of trying the network (deploys refuse static ones).
        var arguments = ["run", "--no-prompt", "--no-config", "--no-remote", "--no-npm", "--allow-read=\(functionDirectory)"]
        if !allowNet.isEmpty { arguments.append("--allow-net=\(allowNet.joined(separator: ","))") }
        if !environment.isEmpty { arguments.append("--allow-env=\(environment.keys.sorted().joined(separator: ","))") }
        arguments += ["--v8-flags=--max-old-space-size=\(limits.memoryMegabytes)", runnerPath, entryPath]
        return arguments
    }

    /// The child's whole environment: the function's variables, then Deno's own settings
    /// (which win). Deno needs no HOME when DENO_DIR is set.
    public var processEnvironment: [String: String] {
        var variables = environment
        variables["DENO_DIR"] = denoDirectory
        variables["NO_COLOR"] = "1"
        variables["DENO_NO_UPDATE_CHECK"] = "1"
        return variables
    }
}
