# tinyguest: a tiny multiboot (v1) guest for albatross-py's QEMU/KVM tests.
#
# Assembled with plain GNU as (`as --32`, no C preprocessor) and linked with
# `ld -m elf_i386 -Ttext=0x100000`; see albatross_py/virt/guest.py.  QEMU's
# `-kernel` loads it on both `-M microvm` and `-M pc` (with qboot).
#
# It uses only integer instructions: no FPU, SSE or XSAVE state is ever
# touched (the nested KVM of our test machines cannot emulate such state
# handling), except in the `crash=` variants that exist to fail on purpose.
#
# Console: COM1 (0x3f8), one "\n"-terminated line per message, all prefixed
# "tinyguest: ".  The first line is the banner
#     tinyguest: booted machine=<pc|pci|microvm> timer=<irq|poll> cmdline=<...>
# where cmdline is the multiboot command line minus its first word (QEMU, like
# GRUB, passes "<kernel path> <-append string>").
#
# Command line words (unknown words are ignored):
#   lines=N       print "tinyguest: line 1" .. "tinyguest: line N"
#   interval=MS   wait MS milliseconds between those lines (default 0)
#   then the final action (default: poweroff):
#   run           print "tinyguest: heartbeat K" about every second until
#                 the power button (QMP system_powerdown) is pressed
#   busy          spin with interrupts off, forever (100% of a CPU, no exits)
#   halt          cli; hlt forever (idle, never exits by itself)
#   stall         spin with interrupts off before touching any device: no
#                 banner, no port I/O, no exit at all (what a kernel that
#                 this host's KVM cannot run looks like; see virt/qemu.py)
#   kvmstall      the same, but only under KVM (CPUID leaf 0x40000000 says
#                 "KVMKVMKVM"); elsewhere (TCG) the other words apply
#   exit=N        exit with code N (1..127) through isa-debug-exit at 0xf4,
#                 so QEMU's exit status is (N<<1)|1; exit=0 means poweroff
#   poweroff      ACPI S5 (PIIX4 PM on pc, the GED sleep register on microvm),
#                 so QEMU exits with status 0
#   crash[=K]     execute an instruction KVM has to emulate but cannot, so
#                 QEMU reports "KVM internal error ... emulation failure" and
#                 keeps running with the VM paused (run state internal-error):
#                   K=0 (default) jump to and execute code in an MMIO hole
#                   K=1 x87 `fildl` with an operand in an MMIO hole
#                   K=2 `xrstor` after enabling XSAVE (CR4.OSXSAVE, XCR0)
#                   K=3 a plain ring-0 `iret`
#                 All four fail on the nested KVM of our test machines.  K=0
#                 and K=1 fail on any KVM (its instruction emulator can
#                 neither fetch code from MMIO nor do x87 memory operands);
#                 K=2 and K=3 run natively on an ordinary KVM host.  Under
#                 TCG, K=0 makes QEMU itself abort.
#
# While waiting (lines' intervals, run) a power button press (PIIX4 PM1
# PWRBTN_STS on pc, the GED's power-down event on microvm) prints
# "tinyguest: power button" and powers off.
#
# Timing: the PIT (channel 0, mode 2) at ~100 Hz, so waits are whole 10 ms
# ticks.  If IRQ 0 reaches us (8259 PIC, local APIC LINT0 as virtual wire),
# waits are `sti; hlt` and an idle VM costs ~1% of a host CPU; otherwise
# they poll the latched channel-0 count (busy, still wall-clock accurate).
# Handlers return without `iret`, which this nested KVM cannot emulate
# (see isr_ignore).
#
# Fatal CPU exceptions print "tinyguest: cpu exception V" and exit with code
# 99.  If isa-debug-exit is absent, an exit request prints a line and halts.

        .code32

        .set MB_MAGIC, 0x1BADB002
        .set MB_FLAGS, 0x00000003           # page-aligned modules, memory info
        .set MB_BOOT_MAGIC, 0x2BADB002      # what the loader leaves in %eax
        .set MB_INFO_CMDLINE, 0x4           # flags bit: cmdline field is valid

        .set COM1, 0x3f8
        .set DEBUG_EXIT_PORT, 0xf4
        .set EXIT_EXCEPTION, 99

        .set PIT_DIVISOR_1KHZ, 1193         # 1193182 Hz / 1193 = ~1000 Hz
        .set PIT_DIVISOR, 11932             # 1193182 Hz / 11932 = ~100 Hz
        .set TICK_MS, 10                    # so one tick is 10 ms
        .set MMIO_HOLE, 0xd0000000          # no RAM, ROM or device here (pc, microvm)

        .set LAPIC_SVR, 0xfee000f0
        .set LAPIC_LVT0, 0xfee00350
        .set LAPIC_LVT1, 0xfee00360
        .set GED_EVT_SEL, 0xfea00000        # microvm: ACPI GED event selector
        .set GED_PWR_DOWN_EVT, 0x2
        .set GED_SLEEP_CTL, 0xfea00200      # microvm: ACPI GED sleep control
        .set GED_S5, 0x34                   # SLP_EN (0x20) | SLP_TYP 5 << 2
        .set PIIX4_PM_CFG, 0x80000b00       # PCI config address of 00:01.3
        .set PIIX4_PM_ID, 0x71138086
        .set PIIX4_PM_DEFAULT_BASE, 0x600   # SeaBIOS's and qboot's choice
        .set I440FX_ID, 0x12378086

        .set ACT_POWEROFF, 0
        .set ACT_EXIT, 1
        .set ACT_RUN, 2
        .set ACT_BUSY, 3
        .set ACT_HALT, 4
        .set ACT_CRASH, 5
        .set ACT_STALL, 6

        .section .text
        .globl _start
        .align 4
multiboot_header:
        .long MB_MAGIC
        .long MB_FLAGS
        .long -(MB_MAGIC + MB_FLAGS)

_start:
        cli
        cld
        movl $stack_top, %esp
        movl $empty, %esi
        cmpl $MB_BOOT_MAGIC, %eax
        jne 1f
        testl $MB_INFO_CMDLINE, (%ebx)
        jz 1f
        movl 16(%ebx), %esi
1:      movl %esi, cmdline

        lgdt gdt_desc
        ljmp $0x08, $reload_segments
reload_segments:
        movl $0x10, %eax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %fs
        movw %ax, %gs
        movw %ax, %ss

        # Drop the first word (the kernel's path) from the command line and
        # read the words before any device is touched (memory only), so
        # `stall` makes no exit at all.
        movl cmdline, %esi
        call skip_spaces
        call skip_word
        call skip_spaces
        movl %esi, cmdline
        call parse_cmdline
        cmpl $ACT_STALL, action
        je do_stall
        cmpb $0, kvm_stall
        je 1f
        movl $0x40000000, %eax          # hypervisor CPUID leaf: "KVMKVMKVM" under KVM
        cpuid
        cmpl $0x4b4d564b, %ebx          # "KVMK"
        je do_stall
1:

        call serial_init
        call idt_init
        call detect_machine
        call timer_init
        call acpi_init

        movl $msg_booted, %esi
        call puts
        movl $machine_name_microvm, %esi
        cmpb $0, has_pci
        je 2f
        movl $machine_name_pci, %esi
        cmpb $0, is_pc
        je 2f
        movl $machine_name_pc, %esi
2:      call puts
        movl $msg_timer_poll, %esi
        cmpb $0, irq_mode
        je 3f
        movl $msg_timer_irq, %esi
3:      call puts
        movl cmdline, %esi
        call puts
        movb $'\n', %al
        call putc

        call print_lines

        movl action, %eax
        cmpl $ACT_EXIT, %eax
        je do_exit
        cmpl $ACT_RUN, %eax
        je do_run
        cmpl $ACT_BUSY, %eax
        je do_busy
        cmpl $ACT_HALT, %eax
        je do_halt
        cmpl $ACT_CRASH, %eax
        je do_crash
        jmp do_poweroff

# ---------------------------------------------------------------- actions

do_exit:
        cmpl $0, exit_code
        je do_poweroff
        movl $msg_exit, %esi
        call puts
        movl exit_code, %eax
        call putdec
        movb $'\n', %al
        call putc
        movl exit_code, %eax
        jmp debug_exit

do_run:
        movl $msg_running, %esi
        call puts
        xorl %ebx, %ebx
1:      movl $1000, %eax
        call delay_ms
        incl %ebx
        movl $msg_heartbeat, %esi
        call puts
        movl %ebx, %eax
        call putdec
        movb $'\n', %al
        call putc
        jmp 1b

do_busy:
        movl $msg_busy, %esi
        call puts
        cli
1:      jmp 1b

do_stall:
        cli
1:      jmp 1b

do_halt:
        movl $msg_halt, %esi
        call puts
halt_forever:
        cli
1:      hlt
        jmp 1b

do_poweroff:
        movl $msg_poweroff, %esi
        call puts
        movl pm_base, %edx
        testl %edx, %edx
        jz 2f
        # PIIX4 (pc): SLP_EN with SLP_TYP 0, which QEMU's PIIX4 treats as S5.
        addl $4, %edx                       # PM1a_CNT
        movw $0x2000, %ax
        outw %ax, %dx
        jmp 3f
2:      cmpb $0, has_pci
        jne 3f
        # microvm: hardware-reduced ACPI, the GED's sleep control register.
        movb $GED_S5, GED_SLEEP_CTL
3:      movl $200, %eax
        call delay_ms
        movl $msg_poweroff_failed, %esi
        call puts
        xorl %eax, %eax
        jmp debug_exit

do_crash:
        movl $msg_crash, %esi
        call puts
        movl crash_variant, %eax
        call putdec
        movb $'\n', %al
        call putc
        movl crash_variant, %eax
        cmpl $3, %eax
        je crash_iret
        cmpl $1, %eax
        je crash_x87
        cmpl $2, %eax
        je crash_xrstor
        # Execute from an MMIO hole: KVM must fetch the instruction bytes
        # from memory that is not memory, which its emulator cannot do.
        movl $MMIO_HOLE, %eax
        jmp *%eax
crash_x87:
        # An x87 load whose operand is MMIO: KVM's emulator has no x87
        # memory forms.  CR0.EM/TS are cleared first so it is no #NM/#UD.
        movl %cr0, %eax
        andl $~0xc, %eax
        orl $0x22, %eax                     # MP, NE
        movl %eax, %cr0
        fninit
        fildl MMIO_HOLE
        jmp crash_survived
crash_xrstor:
        movl $1, %eax
        cpuid
        btl $26, %ecx                       # XSAVE supported?
        jnc crash_survived
        movl %cr4, %eax
        orl $((1 << 18) | (1 << 9)), %eax   # OSXSAVE, OSFXSR
        movl %eax, %cr4
        xorl %ecx, %ecx
        movl $3, %eax                       # XCR0 = x87 | SSE
        xorl %edx, %edx
        xsetbv
        movl $xsave_area, %edi
        movl $3, %eax
        xorl %edx, %edx
        xrstor (%edi)
crash_iret:
        # A plain same-privilege iret.
        pushfl
        pushl %cs
        pushl $crash_survived
        iret
crash_survived:
        movl $msg_crash_survived, %esi
        call puts
        jmp halt_forever

# Exit through isa-debug-exit with the code in %al; QEMU exits (al<<1)|1.
debug_exit:
        outb %al, $DEBUG_EXIT_PORT
        movl $msg_no_debug_exit, %esi
        call puts
        jmp halt_forever

# ---------------------------------------------------------------- lines

print_lines:
        pushl %ebx
        xorl %ebx, %ebx
1:      cmpl lines, %ebx
        jae 3f
        testl %ebx, %ebx
        jz 2f
        movl interval, %eax
        call delay_ms
2:      incl %ebx
        movl $msg_line, %esi
        call puts
        movl %ebx, %eax
        call putdec
        movb $'\n', %al
        call putc
        jmp 1b
3:      popl %ebx
        ret

# ---------------------------------------------------------------- parsing

parse_cmdline:
        pushl %esi
        pushl %edi
        movl cmdline, %esi
next_word:
        call skip_spaces
        cmpb $0, (%esi)
        je parse_done
        movl $kw_lines, %edi
        call match_word
        jc 1f
        call parse_uint
        movl %eax, lines
        jmp end_word
1:      movl $kw_interval, %edi
        call match_word
        jc 1f
        call parse_uint
        movl %eax, interval
        jmp end_word
1:      movl $kw_exit, %edi
        call match_word
        jc 1f
        call parse_uint
        andl $0x7f, %eax
        movl %eax, exit_code
        movl $ACT_EXIT, action
        jmp end_word
1:      movl $kw_crash_eq, %edi
        call match_word
        jc 1f
        call parse_uint
        movl %eax, crash_variant
        movl $ACT_CRASH, action
        jmp end_word
1:      movl $kw_crash, %edi
        call match_word
        jc 1f
        movl $0, crash_variant
        movl $ACT_CRASH, action
        jmp end_word
1:      movl $kw_run, %edi
        call match_word
        jc 1f
        movl $ACT_RUN, action
        jmp end_word
1:      movl $kw_busy, %edi
        call match_word
        jc 1f
        movl $ACT_BUSY, action
        jmp end_word
1:      movl $kw_halt, %edi
        call match_word
        jc 1f
        movl $ACT_HALT, action
        jmp end_word
1:      movl $kw_kvmstall, %edi
        call match_word
        jc 1f
        movb $1, kvm_stall
        jmp end_word
1:      movl $kw_stall, %edi
        call match_word
        jc 1f
        movl $ACT_STALL, action
        jmp end_word
1:      movl $kw_poweroff, %edi
        call match_word
        jc end_word
        movl $ACT_POWEROFF, action
end_word:
        call skip_word
        jmp next_word
parse_done:
        popl %edi
        popl %esi
        ret

# %esi: text; %edi: keyword.  A keyword ending in '=' matches a prefix and
# leaves %esi after the '='; any other keyword must be the whole word.
# CF clear on a match (%esi advanced), set otherwise (%esi unchanged).
match_word:
        pushl %esi
        pushl %edi
1:      movb (%edi), %al
        testb %al, %al
        jz 2f
        cmpb (%esi), %al
        jne 4f
        incl %esi
        incl %edi
        jmp 1b
2:      cmpb $'=', -1(%edi)
        je 3f
        movb (%esi), %al
        testb %al, %al
        jz 3f
        cmpb $' ', %al
        jne 4f
3:      popl %edi
        addl $4, %esp
        clc
        ret
4:      popl %edi
        popl %esi
        stc
        ret

# Parse a decimal number at %esi into %eax (stops at the first non-digit).
parse_uint:
        pushl %ebx
        xorl %eax, %eax
1:      movzbl (%esi), %ebx
        subl $'0', %ebx
        cmpl $9, %ebx
        ja 2f
        imull $10, %eax, %eax
        addl %ebx, %eax
        incl %esi
        jmp 1b
2:      popl %ebx
        ret

skip_spaces:
        cmpb $' ', (%esi)
        jne 1f
        incl %esi
        jmp skip_spaces
1:      ret

skip_word:
        movb (%esi), %al
        testb %al, %al
        jz 1f
        cmpb $' ', %al
        je 1f
        incl %esi
        jmp skip_word
1:      ret

# ---------------------------------------------------------------- serial

serial_init:
        movw $(COM1 + 1), %dx
        xorb %al, %al
        outb %al, %dx                       # no UART interrupts
        movw $(COM1 + 3), %dx
        movb $0x80, %al
        outb %al, %dx                       # DLAB on
        movw $COM1, %dx
        movb $1, %al
        outb %al, %dx                       # divisor 1: 115200 baud
        movw $(COM1 + 1), %dx
        xorb %al, %al
        outb %al, %dx
        movw $(COM1 + 3), %dx
        movb $0x03, %al
        outb %al, %dx                       # 8N1, DLAB off
        movw $(COM1 + 2), %dx
        movb $0x07, %al
        outb %al, %dx                       # FIFOs on and cleared
        ret

# Write %al to COM1 (waits, boundedly, for the transmitter to be empty).
putc:
        pushl %ecx
        pushl %edx
        movb %al, %ah
        movl $100000, %ecx
        movw $(COM1 + 5), %dx
1:      inb %dx, %al
        testb $0x20, %al
        jnz 2f
        loop 1b
2:      movb %ah, %al
        movw $COM1, %dx
        outb %al, %dx
        popl %edx
        popl %ecx
        ret

# Write the NUL-terminated string at %esi (clobbers %esi).
puts:
        movb (%esi), %al
        testb %al, %al
        jz 1f
        call putc
        incl %esi
        jmp puts
1:      ret

# Write %eax in decimal.
putdec:
        pushl %ebx
        pushl %ecx
        pushl %edx
        movl $10, %ebx
        xorl %ecx, %ecx
1:      xorl %edx, %edx
        divl %ebx
        pushl %edx
        incl %ecx
        testl %eax, %eax
        jnz 1b
2:      popl %eax
        addb $'0', %al
        call putc
        loop 2b
        popl %edx
        popl %ecx
        popl %ebx
        ret

# ---------------------------------------------------------------- PCI

# Read the config dword at address %eax (0x80000000 | bdf << 8 | reg).
pci_read:
        pushl %edx
        movw $0xcf8, %dx
        outl %eax, %dx
        movw $0xcfc, %dx
        inl %dx, %eax
        popl %edx
        ret

# Write %ecx to the config dword at address %eax.
pci_write:
        pushl %edx
        movw $0xcf8, %dx
        outl %eax, %dx
        movl %ecx, %eax
        movw $0xcfc, %dx
        outl %eax, %dx
        popl %edx
        ret

# pc (i440FX host bridge at 00:00.0), another PCI machine, or no PCI
# (microvm: the config ports read as all ones).
detect_machine:
        movl $0x80000000, %eax
        call pci_read
        cmpw $0xffff, %ax
        je 1f
        movb $1, has_pci
        cmpl $I440FX_ID, %eax
        jne 1f
        movb $1, is_pc
1:      ret

# ---------------------------------------------------------------- ACPI

# pc: find (or assign) the PIIX4 PM I/O base, switch its I/O space on and
# enable the power button event, so that QMP system_powerdown sets PM1_STS.
# microvm needs nothing: its GED latches a power-down request by itself.
acpi_init:
        cmpb $0, is_pc
        je 2f
        movl $PIIX4_PM_CFG, %eax
        call pci_read
        cmpl $PIIX4_PM_ID, %eax
        jne 2f
        movl $(PIIX4_PM_CFG + 0x40), %eax
        call pci_read
        andl $0xffc0, %eax
        jnz 1f
        movl $(PIIX4_PM_CFG + 0x40), %eax
        movl $(PIIX4_PM_DEFAULT_BASE | 1), %ecx
        call pci_write
        movl $PIIX4_PM_DEFAULT_BASE, %eax
1:      movl %eax, pm_base
        movl $(PIIX4_PM_CFG + 0x80), %eax
        call pci_read
        orl $1, %eax                        # PMIOSE: enable the PM I/O space
        movl %eax, %ecx
        movl $(PIIX4_PM_CFG + 0x80), %eax
        call pci_write
        movl pm_base, %edx
        addl $2, %edx                       # PM1_EN
        movw $0x100, %ax                    # PWRBTN_EN
        outw %ax, %dx
2:      ret

# If the power button was pressed (QMP system_powerdown), power off; this
# never returns then.  Called every tick while waiting.  Clobbers nothing.
check_power_button:
        pushl %eax
        pushl %edx
        movl pm_base, %edx
        testl %edx, %edx
        jz 1f
        inw %dx, %ax                        # PM1_STS
        testw $0x100, %ax                   # PWRBTN_STS
        jz 3f
        movw $0x100, %ax
        outw %ax, %dx                       # write 1 to clear
        jmp 2f
1:      cmpb $0, has_pci
        jne 3f
        movl GED_EVT_SEL, %eax              # read-and-clear on QEMU's GED
        testl $GED_PWR_DOWN_EVT, %eax
        jz 3f
2:      movl $msg_power_button, %esi
        call puts
        jmp do_poweroff
3:      popl %edx
        popl %eax
        ret

# ---------------------------------------------------------------- timer

# Remap the 8259 PIC to vectors 0x20-0x2f with only IRQ 0 unmasked, start
# the PIT at ~1 kHz, then see whether its interrupt reaches us within a few
# polled ticks; if it does not, delays poll the PIT instead.
timer_init:
        movb $0x11, %al
        outb %al, $0x20
        outb %al, $0xa0
        movb $0x20, %al
        outb %al, $0x21
        movb $0x28, %al
        outb %al, $0xa1
        movb $0x04, %al
        outb %al, $0x21
        movb $0x02, %al
        outb %al, $0xa1
        movb $0x01, %al
        outb %al, $0x21
        outb %al, $0xa1
        movb $0xfe, %al
        outb %al, $0x21
        movb $0xff, %al
        outb %al, $0xa1

        # The PIC's output reaches the CPU through the local APIC's LINT0
        # in ExtINT mode (the "virtual wire"); firmware may have left the
        # APIC software-disabled or LINT0 masked, so set that up.
        movl $1, %eax
        cpuid
        btl $9, %edx
        jnc 1f
        movl $0x1ff, LAPIC_SVR              # APIC on, spurious vector 0xff
        movl $0x700, LAPIC_LVT0             # LINT0: ExtINT
        movl $0x400, LAPIC_LVT1             # LINT1: NMI
1:
        # Probe at 1 kHz so that a working interrupt shows up within a
        # millisecond or two, then tick at 100 Hz: at 1 kHz an idle VM
        # costs ~13% of a host CPU here, at 100 Hz about a tenth of that.
        movw $PIT_DIVISOR_1KHZ, %ax
        call pit_start
        sti
        movl $5, %ecx
        call pit_read
        movw %ax, %bx
2:      cmpl $0, ticks
        jne 3f
        call pit_read
        cmpw %bx, %ax
        movw %ax, %bx
        jbe 2b
        loop 2b
3:      cli
        cmpl $0, ticks
        je 4f
        movb $1, irq_mode
4:      movw $PIT_DIVISOR, %ax
        call pit_start
        movl $0, ticks
        ret

# Run PIT channel 0 as a rate generator (mode 2) with divisor %ax.
pit_start:
        movw %ax, %cx
        movb $0x34, %al                     # channel 0, lo/hi byte, mode 2
        outb %al, $0x43
        movb %cl, %al
        outb %al, $0x40
        movb %ch, %al
        outb %al, $0x40
        ret

# Latch and read PIT channel 0's count into %ax.
pit_read:
        movb $0x00, %al
        outb %al, $0x43
        inb $0x40, %al
        movb %al, %ah
        inb $0x40, %al
        xchgb %al, %ah
        ret

# Wait %eax ticks by counting PIT channel 0 reloads.
poll_ticks:
        pushl %ebx
        pushl %ecx
        movl %eax, %ecx
        testl %ecx, %ecx
        jz 3f
        call pit_read
        movw %ax, %bx
1:      call pit_read
        cmpw %bx, %ax
        movw %ax, %bx
        jbe 1b                              # still counting down
        call check_power_button
        loop 1b                             # reloaded: one more tick
3:      popl %ecx
        popl %ebx
        ret

# Wait %eax milliseconds, rounded up to whole ticks (idle with hlt when the
# timer interrupt works).  Clobbers %eax, %ecx, %edx.
delay_ms:
        addl $(TICK_MS - 1), %eax
        xorl %edx, %edx
        movl $TICK_MS, %ecx
        divl %ecx
        cmpb $0, irq_mode
        je poll_ticks
        pushl %ebx
        movl ticks, %ebx
1:      call check_power_button
        movl ticks, %edx
        subl %ebx, %edx
        cmpl %eax, %edx
        jae 2f
        sti
        hlt
        cli
        jmp 1b
2:      popl %ebx
        ret

# ---------------------------------------------------------------- interrupts

# Vectors 0-31 go to a stub that pushes its number, 0x20 is the PIT, and
# every other vector (spurious PIC interrupts included) just returns.
idt_init:
        movl $idt, %edi
        xorl %ecx, %ecx
1:      movl $isr_ignore, %eax
        cmpl $32, %ecx
        jae 2f
        imull $7, %ecx, %eax
        addl $exception_stubs, %eax
        jmp 3f
2:      jne 3f
        movl $isr_timer, %eax
3:      movw %ax, (%edi)
        movw $0x08, 2(%edi)
        movw $0x8e00, 4(%edi)               # present, ring 0, 32-bit interrupt gate
        shrl $16, %eax
        movw %ax, 6(%edi)
        addl $8, %edi
        incl %ecx
        cmpl $256, %ecx
        jb 1b
        lidt idt_desc
        ret

isr_timer:
        incl ticks
        pushl %eax
        movb $0x20, %al
        outb %al, $0x20                     # EOI to the master PIC
        popl %eax
isr_ignore:
        # Return without `iret`: on the nested KVM of our test machines an
        # iret from an interrupt handler ends in "KVM internal error ...
        # emulation failure".  Interrupts only arrive in `sti; hlt`, at ring
        # 0 on one stack, so rewrite the frame [eip, cs, eflags] into
        # [eflags without IF, eip] and use popfl; ret.  Returning with
        # interrupts off means no second interrupt can nest in here.
        pushl %eax
        movl 4(%esp), %eax                  # eip
        xchgl %eax, 12(%esp)                # eflags slot := eip
        andl $~0x200, %eax
        movl %eax, 8(%esp)                  # cs slot := eflags without IF
        popl %eax
        addl $4, %esp
        popfl
        ret

        # 32 stubs of 7 bytes each: push imm8; jmp rel32.
exception_stubs:
        .set vector, 0
        .rept 32
        .byte 0x6a, vector
        .byte 0xe9
        .long exception_common - (. + 4)
        .set vector, vector + 1
        .endr

exception_common:
        movl $msg_exception, %esi
        call puts
        popl %eax
        call putdec
        movb $'\n', %al
        call putc
        movl $EXIT_EXCEPTION, %eax
        jmp debug_exit

# ---------------------------------------------------------------- data

        .section .rodata
msg_booted:             .asciz "tinyguest: booted machine="
machine_name_pc:        .asciz "pc"
machine_name_pci:       .asciz "pci"
machine_name_microvm:   .asciz "microvm"
msg_timer_irq:          .asciz " timer=irq cmdline="
msg_timer_poll:         .asciz " timer=poll cmdline="
msg_line:               .asciz "tinyguest: line "
msg_exit:               .asciz "tinyguest: exit "
msg_running:            .asciz "tinyguest: running\n"
msg_heartbeat:          .asciz "tinyguest: heartbeat "
msg_busy:               .asciz "tinyguest: busy\n"
msg_halt:               .asciz "tinyguest: halt\n"
msg_poweroff:           .asciz "tinyguest: poweroff\n"
msg_poweroff_failed:    .asciz "tinyguest: poweroff failed, exit 0 via isa-debug-exit\n"
msg_power_button:       .asciz "tinyguest: power button\n"
msg_crash:              .asciz "tinyguest: crash "
msg_crash_survived:     .asciz "tinyguest: crash instruction survived, halting\n"
msg_no_debug_exit:      .asciz "tinyguest: no isa-debug-exit device, halting\n"
msg_exception:          .asciz "tinyguest: cpu exception "
kw_lines:               .asciz "lines="
kw_interval:            .asciz "interval="
kw_exit:                .asciz "exit="
kw_crash_eq:            .asciz "crash="
kw_crash:               .asciz "crash"
kw_run:                 .asciz "run"
kw_busy:                .asciz "busy"
kw_halt:                .asciz "halt"
kw_stall:               .asciz "stall"
kw_kvmstall:            .asciz "kvmstall"
kw_poweroff:            .asciz "poweroff"
empty:                  .asciz ""

        .align 8
gdt:
        .quad 0
        .quad 0x00cf9a000000ffff            # 0x08: flat 32-bit code
        .quad 0x00cf92000000ffff            # 0x10: flat 32-bit data
gdt_end:
gdt_desc:
        .word gdt_end - gdt - 1
        .long gdt
idt_desc:
        .word 256 * 8 - 1
        .long idt

        .section .data
        .align 4
cmdline:        .long 0
lines:          .long 0
interval:       .long 0
action:         .long ACT_POWEROFF
kvm_stall:      .byte 0
exit_code:      .long 0
crash_variant:  .long 0
ticks:          .long 0
pm_base:        .long 0
has_pci:        .byte 0
is_pc:          .byte 0
irq_mode:       .byte 0

        .section .bss
        .align 64
xsave_area:     .skip 4096
        .align 8
idt:            .skip 256 * 8
        .align 16
stack:          .skip 16384
stack_top:
