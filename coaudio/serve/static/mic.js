// The browser's microphone as mono Float32 blocks: getUserMedia -> AudioContext -> the pcm-tap
// AudioWorklet (worklet.js), which gathers the 128-frame render quanta into blocks of about
// `blockSeconds`. The blocks are at the AudioContext's sample rate (the device's, usually 44.1
// or 48 kHz); the server resamples.

const CONSTRAINTS = {
  audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },  // the raw sound
  video: false,
};

export async function openMicrophone(workletUrl, blockSeconds, onBlock) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error("this browser offers no microphone to this page: open it on https or on localhost");
  }
  const media = await navigator.mediaDevices.getUserMedia(CONSTRAINTS);
  let ctx = null;
  try {
    ctx = new AudioContext();
    await ctx.audioWorklet.addModule(workletUrl);
  } catch (err) {
    media.getTracks().forEach((track) => track.stop());
    if (ctx) ctx.close();
    throw err;
  }
  const node = new AudioWorkletNode(ctx, "pcm-tap", {
    numberOfInputs: 1,
    numberOfOutputs: 1,
    outputChannelCount: [1],
    processorOptions: { blockFrames: Math.round(ctx.sampleRate * blockSeconds) },
  });
  let flushed = null;
  node.port.onmessage = (event) => {
    if (event.data instanceof ArrayBuffer) onBlock(event.data);
    else if (event.data === "flushed" && flushed) flushed();
  };
  const source = ctx.createMediaStreamSource(media);
  source.connect(node);
  node.connect(ctx.destination);  // so that the graph pulls it; its output is silence
  if (ctx.state === "suspended") ctx.resume();  // not awaited: without a user gesture it may wait
  const track = media.getAudioTracks()[0];
  let closed = false;
  return {
    rate: ctx.sampleRate,
    device: (track && track.label) || "microphone",
    flush(timeoutMs = 500) {  // the last partial block goes to onBlock before this resolves
      return new Promise((resolve) => {
        if (closed) return resolve();
        flushed = resolve;
        node.port.postMessage("flush");
        setTimeout(resolve, timeoutMs);
      });
    },
    close() {
      if (closed) return;
      closed = true;
      media.getTracks().forEach((t) => t.stop());
      source.disconnect();
      node.disconnect();
      ctx.close();
    },
  };
}
