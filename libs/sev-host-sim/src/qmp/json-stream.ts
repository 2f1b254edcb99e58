/**
 * Splits a QMP byte stream into top-level JSON texts. QMP is a stream of JSON values, not a line protocol: QEMU's
 * own parser accepts objects split across writes or several in one write, and so must a faithful server.
 */
export class JsonStreamSplitter {
  private buf = '';
  private depth = 0;
  private inString = false;
  private escaped = false;
  private bare = false;

  constructor(private readonly maxBytes = 1 << 20) {}

  /** Feed a chunk; returns the complete texts it finished. Throws RangeError when one value exceeds maxBytes. */
  push(chunk: string): string[] {
    const out: string[] = [];
    for (const ch of chunk) {
      if (this.depth === 0 && !this.bare) {
        if (ch === '{' || ch === '[') {
          this.buf = ch;
          this.depth = 1;
        } else if (!/\s/.test(ch)) {
          // Something that is not an object: collect it to the end of the line so the caller can answer it.
          this.buf = ch;
          this.bare = true;
        }
        continue;
      }
      this.buf += ch;
      if (this.buf.length > this.maxBytes) {
        this.reset();
        throw new RangeError(`a QMP input value exceeds ${this.maxBytes} bytes`);
      }
      if (this.bare) {
        if (ch === '\n') {
          out.push(this.buf.trim());
          this.reset();
        }
        continue;
      }
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (ch === '\\') this.escaped = true;
        else if (ch === '"') this.inString = false;
        continue;
      }
      if (ch === '"') this.inString = true;
      else if (ch === '{' || ch === '[') this.depth++;
      else if (ch === '}' || ch === ']') {
        this.depth--;
        if (this.depth === 0) {
          out.push(this.buf);
          this.reset();
        }
      }
    }
    return out;
  }

  private reset(): void {
    this.buf = '';
    this.depth = 0;
    this.inString = false;
    this.escaped = false;
    this.bare = false;
  }
}
