//! CUDA driver result codes the emulator returns (values from `cuda.h`).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum CuError {
    InvalidValue = 1,
    OutOfMemory = 2,
    NotInitialized = 3,
    Deinitialized = 4,
    NoDevice = 100,
    InvalidDevice = 101,
    InvalidImage = 200,
    InvalidContext = 201,
    NoBinaryForGpu = 209,
    InvalidPtx = 218,
    InvalidSource = 300,
    InvalidHandle = 400,
    NotFound = 500,
    NotReady = 600,
    IllegalAddress = 700,
    LaunchOutOfResources = 701,
    LaunchTimeout = 702,
    MisalignedAddress = 716,
    LaunchFailed = 719,
    StreamCaptureUnsupported = 900,
    StreamCaptureInvalidated = 901,
    StreamCaptureUnmatched = 903,
    StreamCaptureUnjoined = 904,
    StreamCaptureIsolation = 905,
    StreamCaptureImplicit = 906,
    NotSupported = 801,
    Unknown = 999,
}

impl CuError {
    /// Errors a real GPU makes sticky: every later call on the context fails with the same code.
    pub fn is_sticky(self) -> bool {
        matches!(
            self,
            CuError::IllegalAddress | CuError::MisalignedAddress | CuError::LaunchFailed
        )
    }

    pub fn code(self) -> u32 {
        self as u32
    }

    pub fn name(self) -> &'static str {
        match self {
            CuError::InvalidValue => "CUDA_ERROR_INVALID_VALUE",
            CuError::OutOfMemory => "CUDA_ERROR_OUT_OF_MEMORY",
            CuError::NotInitialized => "CUDA_ERROR_NOT_INITIALIZED",
            CuError::Deinitialized => "CUDA_ERROR_DEINITIALIZED",
            CuError::NoDevice => "CUDA_ERROR_NO_DEVICE",
            CuError::InvalidDevice => "CUDA_ERROR_INVALID_DEVICE",
            CuError::InvalidImage => "CUDA_ERROR_INVALID_IMAGE",
            CuError::InvalidContext => "CUDA_ERROR_INVALID_CONTEXT",
            CuError::NoBinaryForGpu => "CUDA_ERROR_NO_BINARY_FOR_GPU",
            CuError::InvalidPtx => "CUDA_ERROR_INVALID_PTX",
            CuError::InvalidSource => "CUDA_ERROR_INVALID_SOURCE",
            CuError::InvalidHandle => "CUDA_ERROR_INVALID_HANDLE",
            CuError::NotFound => "CUDA_ERROR_NOT_FOUND",
            CuError::NotReady => "CUDA_ERROR_NOT_READY",
            CuError::IllegalAddress => "CUDA_ERROR_ILLEGAL_ADDRESS",
            CuError::LaunchOutOfResources => "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES",
            CuError::LaunchTimeout => "CUDA_ERROR_LAUNCH_TIMEOUT",
            CuError::MisalignedAddress => "CUDA_ERROR_MISALIGNED_ADDRESS",
            CuError::LaunchFailed => "CUDA_ERROR_LAUNCH_FAILED",
            CuError::StreamCaptureUnsupported => "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED",
            CuError::StreamCaptureInvalidated => "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED",
            CuError::StreamCaptureUnmatched => "CUDA_ERROR_STREAM_CAPTURE_UNMATCHED",
            CuError::StreamCaptureUnjoined => "CUDA_ERROR_STREAM_CAPTURE_UNJOINED",
            CuError::StreamCaptureIsolation => "CUDA_ERROR_STREAM_CAPTURE_ISOLATION",
            CuError::StreamCaptureImplicit => "CUDA_ERROR_STREAM_CAPTURE_IMPLICIT",
            CuError::NotSupported => "CUDA_ERROR_NOT_SUPPORTED",
            CuError::Unknown => "CUDA_ERROR_UNKNOWN",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            CuError::InvalidValue => "invalid argument",
            CuError::OutOfMemory => "out of memory",
            CuError::NotInitialized => "initialization error",
            CuError::Deinitialized => "driver shutting down",
            CuError::NoDevice => "no CUDA-capable device is detected",
            CuError::InvalidDevice => "invalid device ordinal",
            CuError::InvalidImage => "device kernel image is invalid",
            CuError::InvalidContext => "invalid device context",
            CuError::NoBinaryForGpu => "no kernel image is available for execution on the device",
            CuError::InvalidPtx => "a PTX JIT compilation failed",
            CuError::InvalidSource => "device kernel image is invalid",
            CuError::InvalidHandle => "invalid resource handle",
            CuError::NotFound => "named symbol not found",
            CuError::NotReady => "device not ready",
            CuError::IllegalAddress => "an illegal memory access was encountered",
            CuError::LaunchOutOfResources => "too many resources requested for launch",
            CuError::LaunchTimeout => "the launch timed out and was terminated",
            CuError::MisalignedAddress => "misaligned address",
            CuError::LaunchFailed => "unspecified launch failure",
            CuError::StreamCaptureUnsupported => "operation not permitted when stream is capturing",
            CuError::StreamCaptureInvalidated => {
                "operation failed due to a previous error during capture"
            }
            CuError::StreamCaptureUnmatched => "capture was not initiated in this stream",
            CuError::StreamCaptureUnjoined => "capturing stream has unjoined work",
            CuError::StreamCaptureIsolation => {
                "dependency created on uncaptured work in another stream"
            }
            CuError::StreamCaptureImplicit => {
                "operation would make the legacy stream depend on a capturing blocking stream"
            }
            CuError::NotSupported => "operation not supported",
            CuError::Unknown => "unknown error",
        }
    }
}

pub type CuResult<T> = Result<T, CuError>;
