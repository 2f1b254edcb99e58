import type { ExitCodeName } from './exit-codes';

/**
 * A failure with the class that decides the exit code. Steps throw it when they know better than their default
 * class (a broker that cannot be reached, a domain config error found while starting).
 */
export class LaunchError extends Error {
  override readonly name = 'LaunchError';
  constructor(
    readonly failure: ExitCodeName,
    message: string,
  ) {
    super(message);
  }
}

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export const configError = (message: string) => new LaunchError('CONFIG', message);
