//! The pre-decoded form of a PTX module: what the parser produces and the executor runs.

use std::collections::HashMap;
use std::sync::Arc;

/// A PTX fundamental type (the `.b32`, `.f16x2`, … of an instruction).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ty {
    B8,
    B16,
    B32,
    B64,
    B128,
    U8,
    U16,
    U32,
    U64,
    S8,
    S16,
    S32,
    S64,
    F16,
    F16x2,
    Bf16,
    Bf16x2,
    Tf32,
    F32,
    F64,
    Pred,
}

impl Ty {
    pub fn bits(self) -> u32 {
        match self {
            Ty::B8 | Ty::U8 | Ty::S8 => 8,
            Ty::B16 | Ty::U16 | Ty::S16 | Ty::F16 | Ty::Bf16 => 16,
            Ty::B32 | Ty::U32 | Ty::S32 | Ty::F32 | Ty::F16x2 | Ty::Bf16x2 | Ty::Tf32 => 32,
            Ty::B64 | Ty::U64 | Ty::S64 | Ty::F64 => 64,
            Ty::B128 => 128,
            Ty::Pred => 1,
        }
    }
    pub fn bytes(self) -> u32 {
        self.bits().div_ceil(8)
    }
    pub fn is_signed(self) -> bool {
        matches!(self, Ty::S8 | Ty::S16 | Ty::S32 | Ty::S64)
    }
    pub fn is_float(self) -> bool {
        matches!(
            self,
            Ty::F16 | Ty::F16x2 | Ty::Bf16 | Ty::Bf16x2 | Ty::Tf32 | Ty::F32 | Ty::F64
        )
    }
    pub fn parse(s: &str) -> Option<Ty> {
        Some(match s {
            "b8" => Ty::B8,
            "b16" => Ty::B16,
            "b32" => Ty::B32,
            "b64" => Ty::B64,
            "b128" => Ty::B128,
            "u8" => Ty::U8,
            "u16" => Ty::U16,
            "u32" => Ty::U32,
            "u64" => Ty::U64,
            "s8" => Ty::S8,
            "s16" => Ty::S16,
            "s32" => Ty::S32,
            "s64" => Ty::S64,
            "f16" => Ty::F16,
            "f16x2" => Ty::F16x2,
            "bf16" => Ty::Bf16,
            "bf16x2" => Ty::Bf16x2,
            "tf32" => Ty::Tf32,
            "f32" => Ty::F32,
            "f64" => Ty::F64,
            "pred" => Ty::Pred,
            _ => return None,
        })
    }
}

/// Rounding modifiers: `.rn .rz .rm .rp` (float results) and `.rni .rzi .rmi .rpi` (to integral).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Rnd {
    #[default]
    None,
    Rn,
    Rz,
    Rm,
    Rp,
    Rna,
    Rni,
    Rzi,
    Rmi,
    Rpi,
}

/// `setp` comparisons (ordered, and the `u` unordered forms that are true on NaN).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Lo,
    Ls,
    Hi,
    Hs,
    Equ,
    Neu,
    Ltu,
    Leu,
    Gtu,
    Geu,
    Num,
    Nan,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Space {
    #[default]
    Generic,
    Global,
    Shared,
    Local,
    Param,
    Const,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    Tid(u8),
    Ntid(u8),
    Ctaid(u8),
    Nctaid(u8),
    LaneId,
    WarpId,
    NWarpId,
    SmId,
    NSmId,
    GridId,
    LaneMaskEq,
    LaneMaskLt,
    LaneMaskLe,
    LaneMaskGt,
    LaneMaskGe,
    Clock,
    Clock64,
    GlobalTimer,
    DynamicSmemSize,
    TotalSmemSize,
}

/// Where an address operand starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrBase {
    /// A register's value.
    Reg(u32),
    /// A kernel parameter: its byte offset in the parameter buffer.
    Param(u32),
    /// A shared variable: its offset in the block's shared memory.
    Shared(u32),
    /// A `.global` / `.const` variable: its index in [`Module::globals`].
    Global(u32),
    /// A `.local` variable: its offset in the thread's local memory.
    Local(u32),
    /// An absolute address (`[1234]`).
    Absolute,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    Reg(u32),
    /// An integer literal as written (sign-extended), or a float literal already converted to the
    /// bits of the instruction's type.
    Imm(u64),
    Special(Special),
    /// `[base + offset]`.
    Addr(AddrBase, i64),
    /// A variable's address used as a value (`mov.u32 %r1, smem;`): the same bases as addresses.
    SymAddr(AddrBase),
    /// A branch target: an instruction index in the kernel's code.
    Label(u32),
    /// `{a, b, c, d}`.
    Vec(Vec<Operand>),
    /// `_`: a result nobody reads.
    Sink,
    /// `!%p` as a source operand.
    PredNot(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Mov,
    Ld,
    St,
    Add,
    Sub,
    Mul,
    Mad,
    Fma,
    Div,
    Rem,
    Abs,
    Neg,
    Min,
    Max,
    And,
    Or,
    Xor,
    Not,
    Cnot,
    Shl,
    Shr,
    /// Funnel shift: `mods.kind` 0 = `.l`, 1 = `.r`; `mods.sat` = `.clamp` (else `.wrap`).
    Shf,
    Setp,
    Selp,
    Slct,
    Cvt,
    Cvta,
    Bra,
    Ret,
    Exit,
    Trap,
    BarSync,
    BarArrive,
    BarRed,
    BarWarpSync,
    Membar,
    Shfl,
    Vote,
    Activemask,
    Mma,
    Ldmatrix,
    CpAsync,
    CpAsyncCommit,
    CpAsyncWait,
    CpAsyncWaitAll,
    Atom,
    Red,
    Prmt,
    Bfe,
    Bfi,
    Brev,
    Popc,
    Clz,
    Lop3,
    Ex2,
    Lg2,
    Rsqrt,
    Rcp,
    Sqrt,
    Sin,
    Cos,
    Tanh,
    Copysign,
    Testp,
    Nanosleep,
    Prefetch,
    Mad24,
    Mul24,
    Sad,
    Dp4a,
    Dp2a,
}

/// Every modifier an instruction may carry; each opcode reads the ones it has.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mods {
    pub rnd: Rnd,
    pub ftz: bool,
    pub sat: bool,
    pub approx: bool,
    pub full: bool,
    /// `.uni` on a branch.
    pub uni: bool,
    pub space: Space,
    /// 1, 2 or 4 (`.v2`, `.v4`).
    pub vec: u8,
    /// `mul`/`mad`: `.lo` (default), `.hi`, `.wide`.
    pub hi: bool,
    pub wide: bool,
    /// `ld.global.nc` (read-only path; same semantics).
    pub nc: bool,
    pub volatile: bool,
    pub cmp: Option<Cmp>,
    /// `setp.*.and/.or/.xor` (with a third predicate) and `bar.red.and/.or/.popc`,
    /// `vote.all/.any/.uni/.ballot`, `shfl.up/.down/.bfly/.idx`, `atom.add/…`.
    pub sub: Sub,
    /// `prmt` mode (`.f4e` …), `None` = the default selector form.
    pub prmt_mode: Option<u8>,
    /// `ldmatrix` `.x1/.x2/.x4` and `.trans`.
    pub num: u8,
    pub trans: bool,
    /// `cp.async` `.cg` (16 bytes, L2 only) vs `.ca`.
    pub cg: bool,
    /// `mma` shape and layouts: `m16n8k16`, `.row.col`.
    pub shape: (u8, u8, u8),
    pub a_row: bool,
    pub b_col: bool,
    /// `shr`/`bfe` signedness comes from the type; `.shiftamt`, `.clamp` etc. are not used.
    pub relu: bool,
    /// `.sync.aligned` collectives.
    pub aligned: bool,
    /// `cvta.to.*` (generic → space) rather than `cvta.*` (space → generic).
    pub to: bool,
    /// `min/max.NaN`: NaN propagates.
    pub nan: bool,
    /// `testp` kind: 0 finite, 1 infinite, 2 number, 3 notanumber, 4 normal, 5 subnormal.
    pub kind: u8,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sub {
    #[default]
    None,
    And,
    Or,
    Xor,
    Popc,
    All,
    Any,
    Uni,
    Ballot,
    Up,
    Down,
    Bfly,
    Idx,
    AtomAdd,
    AtomMin,
    AtomMax,
    AtomExch,
    AtomCas,
    AtomAnd,
    AtomOr,
    AtomXor,
    AtomInc,
    AtomDec,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Instr {
    pub op: Op,
    /// The instruction's (destination) type: `add.s32` → S32; `cvt.f32.f16` → F32.
    pub ty: Ty,
    /// A second type where the instruction has one: `cvt`'s source, `setp`'s compared type is `ty`,
    /// `mma`'s A/B type (`ty` = D/C), `shfl`/`ld` have none (same as `ty`).
    pub ty2: Ty,
    /// `mma`'s C type (D is `ty`).
    pub ty3: Ty,
    pub mods: Mods,
    pub args: Vec<Operand>,
    /// `@%p` / `@!%p`: the guard register and whether it is negated.
    pub guard: Option<(u32, bool)>,
    /// Line in the PTX text (1-based), for messages.
    pub line: u32,
}

#[derive(Clone, Debug)]
pub struct Param {
    pub name: String,
    pub ty: Ty,
    /// Bytes (an array parameter `.param .align 8 .b8 p[16]` has 16).
    pub size: u32,
    pub align: u32,
    pub offset: u32,
}

#[derive(Clone, Debug)]
pub struct Kernel {
    pub name: String,
    pub params: Vec<Param>,
    /// Size of the packed parameter buffer.
    pub param_bytes: u32,
    /// Bits of each register (1 for predicates), indexed by register number.
    pub reg_bits: Vec<u8>,
    /// Register names, for messages.
    pub reg_names: Vec<String>,
    pub code: Vec<Instr>,
    /// Static shared memory of the kernel (module-level and kernel-level `.shared` it uses).
    pub static_shared: u32,
    /// Alignment of the `.extern .shared` array (dynamic shared memory starts at
    /// `roundup(static_shared, this)`); 0 when the kernel declares none.
    pub dynamic_shared_align: u32,
    /// `.local` bytes per thread (stack frame plus `.local` variables).
    pub local_bytes: u32,
    pub maxntid: Option<[u32; 3]>,
    pub reqntid: Option<[u32; 3]>,
}

impl Kernel {
    /// Where dynamic shared memory starts.
    pub fn dynamic_shared_offset(&self) -> u32 {
        let a = self.dynamic_shared_align.max(1);
        self.static_shared.div_ceil(a) * a
    }
}

#[derive(Clone, Debug)]
pub struct GlobalVar {
    pub name: String,
    pub space: Space,
    pub size: u32,
    pub align: u32,
    /// Initial bytes (`= {…}`), zeros when the declaration has no initializer.
    pub init: Vec<u8>,
}

#[derive(Clone, Debug, Default)]
pub struct Module {
    pub version: (u32, u32),
    pub target: String,
    pub kernels: Vec<Arc<Kernel>>,
    pub kernel_index: HashMap<String, usize>,
    pub globals: Vec<GlobalVar>,
}

impl Module {
    pub fn kernel(&self, name: &str) -> Option<&Arc<Kernel>> {
        self.kernel_index.get(name).map(|&i| &self.kernels[i])
    }
}
