// The gateway's notion of "now". Tests (and the 14-day deletion path) move it with
// SHELTERD_CLOCK_OFFSET_MS; nothing else in the gateway calls Date.now() for a decision.
export type Clock = () => Date;

export function systemClock(offsetMs = Number(process.env.SHELTERD_CLOCK_OFFSET_MS ?? 0)): Clock {
  if (!Number.isFinite(offsetMs)) throw new Error('SHELTERD_CLOCK_OFFSET_MS must be a number of milliseconds');
  return () => new Date(Date.now() + offsetMs);
}
