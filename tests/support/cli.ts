import { Writable } from 'node:stream';

/** A terminal for progress bars: what cli-progress draws, kept as text. */
export class FakeTerminal extends Writable {
  readonly isTTY = true;
  readonly columns = 120;
  text = '';
  override _write(chunk: Buffer, _encoding: string, done: () => void) {
    this.text += chunk.toString();
    done();
  }
}
