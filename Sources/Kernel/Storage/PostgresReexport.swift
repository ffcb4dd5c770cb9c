// The libpq connection lives in its own module so plugins and the command line share it
// without importing the kernel; kernel code keeps seeing it as before.
@_exported import MeltyPostgres
