import { PolicyError } from './errors';
import { jsonType, show } from './describe';

// RFC 3339 date-time with a mandatory zone: a local time would make a validity window depend on the broker's TZ.
const RFC3339_RE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|([+-])(\d{2}):(\d{2}))$/;

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/**
 * Parses an ISO 8601 / RFC 3339 timestamp and returns it normalised to UTC with milliseconds (Date#toISOString), so
 * stored policies compare and round-trip exactly. Calendar fields are range-checked here because Date.parse silently
 * rolls "2024-02-30" over into March.
 */
export function normaliseTimestamp(value: unknown, field: string): string {
  if (typeof value !== 'string') {
    throw new PolicyError('ERR_POLICY_TYPE', `${field} must be an ISO 8601 timestamp string, got ${jsonType(value)}`, field);
  }
  const m = RFC3339_RE.exec(value);
  const bad = (why: string): PolicyError => new PolicyError('ERR_POLICY_FORMAT', `${field} ${show(value)} is not a valid timestamp: ${why}`, field);
  if (!m) throw bad('expected YYYY-MM-DDThh:mm[:ss[.fff]] followed by Z or ±hh:mm');
  const [year, month, day, hour, minute] = [m[1], m[2], m[3], m[4], m[5]].map(Number) as [number, number, number, number, number];
  const second = m[6] === undefined ? 0 : Number(m[6]);
  const millis = m[7] === undefined ? 0 : Number(m[7].slice(0, 3).padEnd(3, '0'));
  if (month < 1 || month > 12) throw bad(`month ${month} is not 1..12`);
  if (day < 1 || day > daysInMonth(year, month)) throw bad(`day ${day} does not exist in ${m[1]}-${m[2]}`);
  if (hour > 23) throw bad(`hour ${hour} is not 0..23`);
  if (minute > 59) throw bad(`minute ${minute} is not 0..59`);
  if (second > 59) throw bad(`second ${second} is not 0..59`);
  let offsetMinutes = 0;
  if (m[8] !== 'Z') {
    const oh = Number(m[10]);
    const om = Number(m[11]);
    if (oh > 23 || om > 59) throw bad(`zone offset ${m[8]} is out of range`);
    offsetMinutes = (m[9] === '-' ? -1 : 1) * (oh * 60 + om);
  }
  const utc = new Date(0);
  utc.setUTCFullYear(year, month - 1, day); // not Date.UTC: it maps years 0..99 to 1900..1999
  utc.setUTCHours(hour, minute, second, millis);
  const ms = utc.getTime() - offsetMinutes * 60_000;
  const normalised = new Date(ms).toISOString();
  // A zone offset can push year 0000 or 9999 outside the four-digit years this format (and the normal form) allows.
  if (!RFC3339_RE.test(normalised)) throw bad('it falls outside years 0000..9999 in UTC');
  return normalised;
}
