export type { EndReason, LogEntry, LogEntryOf, LogEntryType, LogPayload, OutputKind } from './entry.js';
export { isEntryOf } from './entry.js';
export { Decoder, Encoder, encodeEntry, LogFrameError, MAX_FRAME_BYTES, type LogFrameErrorCode } from './codec.js';
export { decodeLog$ } from './decode-log.js';
export { LogFileWriter, LogWriteError, readLogFile, scanLogFile, writeLogFile, type LogFileHeader, type LogFileMeta, type LogFileScan } from './file.js';
