// The microphone tap of the live page: an AudioWorklet processor that averages its input to
// mono and posts it to the page in blocks of `blockFrames` samples (process() only ever sees
// 128-frame render quanta; one WebSocket message per quantum would be 375 messages a second).
// The page sends each block as binary f32le at the AudioContext's sample rate.

class PcmTap extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const frames = (options.processorOptions && options.processorOptions.blockFrames) || 4096;
    this.blockFrames = Math.max(128, frames | 0);
    this.block = new Float32Array(this.blockFrames);
    this.filled = 0;
    this.port.onmessage = (event) => {
      if (event.data === "flush") {  // stopping: the last partial block, then an acknowledgement
        this.post(this.filled);
        this.port.postMessage("flushed");
      }
    };
  }

  post(frames) {
    if (frames > 0) {
      const out = frames === this.blockFrames ? this.block : this.block.slice(0, frames);
      this.port.postMessage(out.buffer, [out.buffer]);
    }
    this.block = new Float32Array(this.blockFrames);
    this.filled = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (channels && channels.length) {
      const n = channels[0].length;
      const scale = 1 / channels.length;
      for (let i = 0; i < n; i++) {
        let sum = 0;
        for (let c = 0; c < channels.length; c++) sum += channels[c][i];
        this.block[this.filled++] = sum * scale;
        if (this.filled === this.blockFrames) this.post(this.blockFrames);
      }
    }
    return true;  // keep running while the page holds the node (outputs stay silent)
  }
}

registerProcessor("pcm-tap", PcmTap);
