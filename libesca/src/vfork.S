/* SPDX-License-Identifier: MIT */
/*
 * vfork(): the child runs in its parent's memory, this thread's libesca
 * state included, until it execs or exits.  While it runs, esca_self is
 * NULL (every call it makes goes straight to libc) and esca_vfork_child
 * is 1 (nothing in libesca's memory changes on its behalf); the parent,
 * resumed, puts both back.  In assembly, as glibc's own vfork: the child
 * returns from this function first, and the parent after it, on the same
 * stack, so the return address lives in a register across the system
 * call, never on the stack the child may overwrite.
 */
#if defined(__x86_64__)
#ifdef __CET__
#include <cet.h>
#else
#define _CET_ENDBR
#endif

	.text
	.globl	vfork
	.type	vfork, @function
	.align	16
vfork:
	_CET_ENDBR
	movq	esca_self@GOTTPOFF(%rip), %r8
	movq	esca_vfork_child@GOTTPOFF(%rip), %r9
	movq	%fs:(%r8), %rsi		/* this thread's state, kept for the parent */
	movq	$0, %fs:(%r8)
	movl	$1, %fs:(%r9)
	popq	%rdi			/* the return address */
	movl	$58, %eax		/* SYS_vfork */
	syscall
	testq	%rax, %rax
	jz	.Lchild
	/* the parent (or a failed vfork): the state is its own again */
	movq	%rsi, %fs:(%r8)
	movl	$0, %fs:(%r9)
	pushq	%rdi
	cmpq	$-4095, %rax
	jae	.Lerror
	ret
.Lchild:
#ifdef __CET__
	/* with a shadow stack, the child must not pop the entry its parent
	 * returns through: it jumps back instead (as glibc's vfork does) */
	xorl	%ecx, %ecx
	rdsspq	%rcx
	testq	%rcx, %rcx
	jz	1f
	jmp	*%rdi
1:
#endif
	pushq	%rdi
	ret
.Lerror:
	negl	%eax
	pushq	%rax			/* and the stack is aligned for the call */
	call	__errno_location@PLT
	popq	%rdx
	movl	%edx, (%rax)
	movq	$-1, %rax
	ret
	.size	vfork, .-vfork
#endif

	.section .note.GNU-stack, "", @progbits
