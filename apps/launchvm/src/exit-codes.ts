/**
 * One exit code per failure class, so scripts and orchestrators can react without parsing messages (retry when the
 * broker was unreachable, alert when it refused the launch, page someone when cleanup failed).
 */
export const ExitCode = {
  OK: 0,
  INTERNAL: 1,
  USAGE: 2,
  CONFIG: 3,
  BROKER_UNREACHABLE: 4,
  BUNDLE_REFUSED: 5,
  HYPERVISOR: 6,
  MEASUREMENT: 7,
  SECRET_REFUSED: 8,
  INJECT: 9,
  RESUME: 10,
  CLEANUP: 11,
  INTERRUPTED: 130,
} as const;
export type ExitCodeName = keyof typeof ExitCode;
export type ExitCodeValue = (typeof ExitCode)[ExitCodeName];

export const EXIT_CODE_HELP: Record<ExitCodeName, string> = {
  OK: 'the guest was launched with its secret and is running',
  INTERNAL: 'unexpected internal error',
  USAGE: 'invalid command line',
  CONFIG: 'domain XML, firmware/kernel files or digest inputs unusable (nothing was started)',
  BROKER_UNREACHABLE: 'the broker could not be reached or timed out',
  BUNDLE_REFUSED: 'the broker refused GetBundle (e.g. host certificate chain not trusted, policy not allowed)',
  HYPERVISOR: 'the hypervisor failed to define or start the paused guest (e.g. LAUNCH_START refused)',
  MEASUREMENT: 'launch measurement or platform info missing, malformed or inconsistent',
  SECRET_REFUSED: 'the broker refused GetSecret (measurement mismatch, policy, unknown secret...)',
  INJECT: 'the hypervisor failed to inject the secret',
  RESUME: 'the guest could not be resumed',
  CLEANUP: 'a step failed AND destroying/undefining the guest failed too: check the host by hand',
  INTERRUPTED: 'interrupted (SIGINT/SIGTERM); the guest was destroyed',
};

export function exitCodeTable(): string {
  return (Object.keys(ExitCode) as ExitCodeName[]).map((k) => `  ${String(ExitCode[k]).padStart(3)}  ${EXIT_CODE_HELP[k]}`).join('\n');
}
