//! A minimal GGUF v3 writer (F32 tensors, scalar/string metadata). It exists for tests, fuzz
//! seeds and tiny demo models; real models come from llama.cpp's converter.

/// Builds a GGUF v3 file in memory.
#[derive(Default)]
pub struct GgufWriter {
    kv: Vec<u8>,
    n_kv: u64,
    infos: Vec<u8>,
    data: Vec<u8>,
    n_tensors: u64,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

impl GgufWriter {
    pub fn kv_u32(mut self, key: &str, v: u32) -> Self {
        put_str(&mut self.kv, key);
        self.kv.extend(4u32.to_le_bytes());
        self.kv.extend(v.to_le_bytes());
        self.n_kv += 1;
        self
    }
    pub fn kv_f32(mut self, key: &str, v: f32) -> Self {
        put_str(&mut self.kv, key);
        self.kv.extend(6u32.to_le_bytes());
        self.kv.extend(v.to_le_bytes());
        self.n_kv += 1;
        self
    }
    pub fn kv_str(mut self, key: &str, v: &str) -> Self {
        put_str(&mut self.kv, key);
        self.kv.extend(8u32.to_le_bytes());
        put_str(&mut self.kv, v);
        self.n_kv += 1;
        self
    }
    pub fn kv_str_array(mut self, key: &str, items: &[&str]) -> Self {
        put_str(&mut self.kv, key);
        self.kv.extend(9u32.to_le_bytes());
        self.kv.extend(8u32.to_le_bytes());
        self.kv.extend((items.len() as u64).to_le_bytes());
        for s in items {
            put_str(&mut self.kv, s);
        }
        self.n_kv += 1;
        self
    }
    pub fn kv_i32_array(mut self, key: &str, items: &[i32]) -> Self {
        put_str(&mut self.kv, key);
        self.kv.extend(9u32.to_le_bytes());
        self.kv.extend(5u32.to_le_bytes());
        self.kv.extend((items.len() as u64).to_le_bytes());
        for v in items {
            self.kv.extend(v.to_le_bytes());
        }
        self.n_kv += 1;
        self
    }
    /// Adds an F32 tensor; `shape` is row-major (outermost first).
    pub fn tensor_f32(mut self, name: &str, shape: &[usize], values: &[f32]) -> Self {
        assert_eq!(shape.iter().product::<usize>(), values.len());
        while self.data.len() % 32 != 0 {
            self.data.push(0);
        }
        put_str(&mut self.infos, name);
        self.infos.extend((shape.len() as u32).to_le_bytes());
        for &d in shape.iter().rev() {
            self.infos.extend((d as u64).to_le_bytes());
        }
        self.infos.extend(0u32.to_le_bytes());
        self.infos.extend((self.data.len() as u64).to_le_bytes());
        for v in values {
            self.data.extend(v.to_le_bytes());
        }
        self.n_tensors += 1;
        self
    }
    pub fn build(self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend(self.n_tensors.to_le_bytes());
        out.extend(self.n_kv.to_le_bytes());
        out.extend(self.kv);
        out.extend(self.infos);
        while out.len() % 32 != 0 {
            out.push(0);
        }
        out.extend(self.data);
        out
    }
}

