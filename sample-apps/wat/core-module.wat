;; Evil app: a core WebAssembly module, not a component. It even exports a function
;; named like the batch export, to show the host checks the binary's kind, not names.
(module
  (memory (export "memory") 1)
  (func (export "mysimbdp:ingest/batch-ingest@0.1.0#ingest") (param i32) (result i32)
    i32.const 0))
