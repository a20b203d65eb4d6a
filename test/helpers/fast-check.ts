/**
 * How many times a property runs. `npm test` and CI run each property as often
 * as its test says; the fast lane (`npm run test:fast`, which sets
 * FC_RUNS_SCALE=0.1) runs it that fraction as often, never fewer than
 * fast-check's default of 100 runs nor more than written. Tests that count what
 * their generator produced derive the thresholds from the same number.
 */
export function runs(n: number): number {
  const scale = Number(process.env.FC_RUNS_SCALE ?? '1')
  if (!Number.isFinite(scale) || scale <= 0 || scale >= 1) return n
  return Math.min(n, Math.max(100, Math.round(n * scale)))
}
