export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every 20 ms until it returns a value (not undefined) or `ms` pass; then returns what it last saw. */
export async function eventually<T>(check: () => Promise<T | undefined>, ms = 10_000): Promise<T | undefined> {
  for (const deadline = Date.now() + ms; ;) {
    const v = await check();
    if (v !== undefined || Date.now() >= deadline) return v;
    await sleep(20);
  }
}
