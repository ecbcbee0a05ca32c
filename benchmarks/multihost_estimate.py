"""On paper: how far data-parallel JEM (WRN-28-10, 32x32x3) scales, from 8 to 256 accelerators.

Arithmetic only (plain python3, nothing measured, nothing imported beyond the standard library):
the network's parameters and FLOPs counted layer by layer, one JEM step per example, the gradient
all-reduce on a TPU v5e slice and on H100/H200 nodes, and the smallest per-device batch that keeps
the all-reduce under 10% of the step. Prints every figure and the full table; the README's
"How far data parallelism scales, on paper" quotes it.

    python benchmarks/multihost_estimate.py
"""
import math

# ---------------------------------------------------------------- the network, counted
# JEM's WRN-28-10 as in ebm_jax/nets/resnet.py: stem 3x3 conv 3->16, three groups of n=4
# pre-activation blocks (widths 160/320/640, first blocks strided 1/2/2, the stride on the
# block's SECOND conv as in JEM's wide_basic), 1x1 strided shortcut when shape changes,
# convolutions with biases, padding 1, no batch norm, global mean pool, dense 640->10.


def valid_taps(size_in, k, size_out, stride, pad):
    """Kernel taps (1-D) that land inside the input, summed over output positions."""
    return sum(1 for o in range(size_out) for t in range(k) if 0 <= o * stride - pad + t < size_in)


def wrn(depth=28, k=10, hw=32, cin=3, classes=10, stride_on_conv2=True):
    n = (depth - 4) // 6
    convs = []  # (cin, cout, kernel, stride, h_in)
    convs.append((cin, 16, 3, 1, hw))
    c, h = 16, hw
    for width, s in ((16 * k, 1), (32 * k, 2), (64 * k, 2)):
        for i in range(n):
            st = s if i == 0 else 1
            if stride_on_conv2:
                convs.append((c, width, 3, 1, h))      # conv1, at the input resolution
                convs.append((width, width, 3, st, h))  # conv2 carries the stride (JEM)
            else:
                convs.append((c, width, 3, st, h))
                convs.append((width, width, 3, 1, h // st))
            if c != width or st != 1:
                convs.append((c, width, 1, st, h))     # 1x1 shortcut
            c, h = width, h // st
    params = sum(kk * kk * ci * co + co for ci, co, kk, _, _ in convs) + c * classes + classes
    all_taps = valid = 0
    for ci, co, kk, st, hin in convs:
        pad = kk // 2
        hout = (hin + 2 * pad - kk) // st + 1
        all_taps += 2 * ci * co * (kk * hout) ** 2
        valid += 2 * ci * co * valid_taps(hin, kk, hout, st, pad) ** 2
    head = 2 * c * classes
    return len(convs), params, all_taps + head, valid + head


n_convs, P, F_ALL, F = wrn()
# For comparison: the often-quoted ~5.25 GMAC puts the stride on the block's first conv.
F_STRIDE_FIRST = wrn(stride_on_conv2=False)[2]  # all taps, conv1 strided

# ---------------------------------------------------------------- one JEM step, per example
SGLD_STEPS = 20
# SGLD step: forward + backward w.r.t. the input only (no weight gradients): 2F.
# Training: cross-entropy on b labelled images, generative term on b data + b samples,
# each forward F + backward 2F (activation and weight gradients).
PASSES = SGLD_STEPS * 2 + 3 + 2 * 3          # = 49 forward-equivalents per example
FLOP_EX = PASSES * F
TRAIN_BWD_SHARE = 2 * 3 / PASSES             # training backward (overlappable): 6F of 49F

# Cross-check with the toolkit's own count (benchmarks/results/nvidia-h200-2026-12-04.json,
# jaxpr_flops, padding taps excluded): 21,813,946,112 FLOP per SGLD chain-step and
# 34,204,104,638,464 FLOP per jem_cifar10 step at batch 64.
MEASURED_CHAIN_STEP = 21_813_946_112
MEASURED_STEP_B64 = 34_204_104_638_464

MFU = 0.40
GRAD_BYTES = {"f32": 4 * P, "bf16": 2 * P}

# ---------------------------------------------------------------- accelerators
V5E = dict(peak=197e12, busbw=100e9, alpha=2e-6)  # ICI all-reduce bw 200 GB/s/chip spec; half
H100 = dict(peak=989.4e12, nvl=360e9, nic=40e9, alpha_nvl=2e-6, alpha_ib=8e-6, per_node=8)
TORUS = {8: (2, 4), 16: (4, 4), 32: (4, 8), 64: (8, 8), 128: (8, 16), 256: (16, 16)}


def t_v5e(N, G):
    a, b = TORUS[N]
    return 2 * (N - 1) / N * G / V5E["busbw"] + (2 * (a - 1) + 2 * (b - 1)) * V5E["alpha"]


def t_gpu_hier(N, G):
    """Reduce-scatter and all-gather in the node (NVLink) plus an all-reduce of the 1/8 shard
    between nodes, one NIC per GPU; the parts added, not overlapped."""
    g, d = H100["per_node"], H100
    t = 2 * (g - 1) / g * G / d["nvl"] + 2 * (g - 1) * d["alpha_nvl"]
    M = N // g
    if M > 1:
        t += 2 * (M - 1) / M * (G / g) / d["nic"] + 2 * (M - 1) * d["alpha_ib"]
    return t


def t_gpu_flat(N, G):
    """Pessimistic bound: a flat ring whose every byte goes through each GPU's own NIC."""
    if N <= H100["per_node"]:
        return t_gpu_hier(N, G)
    return 2 * (N - 1) / N * G / H100["nic"] + 2 * (N - 1) * H100["alpha_ib"]


def t_ex(dev):
    return FLOP_EX / (MFU * dev["peak"])     # compute seconds per example of per-device batch


def b_min(t_comm, tex, overlap=False):
    """Smallest per-device batch with communication <= 10% of the step."""
    if overlap:  # exposed = t_comm - TRAIN_BWD_SHARE * t_c must be <= t_c / 9
        return math.ceil(t_comm / ((1 / 9 + TRAIN_BWD_SHARE) * tex))
    return math.ceil(9 * t_comm / tex)


def share(t_comm, tc):
    return t_comm / (tc + t_comm)


if __name__ == "__main__":
    print(f"WRN-28-10: {n_convs} conv layers + head, {P:,} parameters")
    print(f"forward FLOP/image: {F_ALL/1e9:.2f} G (all taps), {F/1e9:.2f} G (padding taps "
          f"excluded, used below); stride on conv1 instead: {F_STRIDE_FIRST/1e9:.2f} G")
    print(f"JEM step: {PASSES} forward-equivalents/example = {FLOP_EX/1e9:.1f} GFLOP x b")
    print(f"check: 2F = {2*F/1e9:.2f} G vs toolkit {MEASURED_CHAIN_STEP/1e9:.2f} G per chain-step;"
          f" 64 x 49F = {64*FLOP_EX/1e12:.2f} T vs toolkit {MEASURED_STEP_B64/1e12:.2f} T")
    print(f"gradient: {GRAD_BYTES['f32']/1e6:.1f} MB f32, {GRAD_BYTES['bf16']/1e6:.1f} MB bf16")
    for name, dev in (("v5e", V5E), ("H100/H200", H100)):
        print(f"{name}: {t_ex(dev)*1e3:.3f} ms compute per example at {MFU:.0%} MFU, "
              f"{64*t_ex(dev)*1e3:.0f} ms per step at b=64")
    adam_bytes = P * 4 * 7  # read param, grad, m, v; write param, m, v (float32)
    print(f"Adam: {adam_bytes/1e9:.2f} GB traffic: {adam_bytes/3.35e12*1e3:.2f} ms at H100's "
          f"3.35 TB/s, {adam_bytes/819e9*1e3:.2f} ms at v5e's 819 GB/s (left out)")
    print(f"SGLD share of compute {40/PASSES:.1%}; overlappable training backward "
          f"{TRAIN_BWD_SHARE:.1%}")
    print(f"measured H200 step at b=64: {1e3/10.32:.1f} ms (10.32 steps/s, 36% MFU); "
          f"model at 36%: {64*FLOP_EX/(0.36*H100['peak'])*1e3:.1f} ms")
    print(f"JEM: 150,000 steps x 64 = {150_000*64/1e6:.1f}M examples = "
          f"{150_000*64/16384:.0f} steps at B=16,384; buffer ratio 20*64/10,000 = "
          f"{20*64/10_000:.3f} SGLD steps per stored chain per update")
    print()
    print("| N | v5e all-reduce ms f32/bf16 | v5e b_min f32/bf16 (overlap) | GPU hier. ms "
          "| GPU hier. b_min | GPU flat ms | GPU flat b_min | B = N·b_min f32: v5e/hier./flat "
          "| comm share at b=64 f32: v5e/hier./flat |")
    print("|---|---|---|---|---|---|---|---|---|")
    for N in (8, 16, 32, 64, 128, 256):
        cells, shares, glob = [str(N)], [], []
        for f, dev in ((t_v5e, V5E), (t_gpu_hier, H100), (t_gpu_flat, H100)):
            t32, t16 = f(N, GRAD_BYTES["f32"]), f(N, GRAD_BYTES["bf16"])
            tex = t_ex(dev)
            cells.append(f"{t32*1e3:.2f} / {t16*1e3:.2f}")
            cells.append(f"{b_min(t32, tex)} / {b_min(t16, tex)} ({b_min(t32, tex, True)})")
            glob.append(f"{N * b_min(t32, tex):,}")
            shares.append(f"{share(t32, 64*tex):.1%}")
        cells.append(" / ".join(glob))
        cells.append(" / ".join(shares))
        print("| " + " | ".join(cells) + " |")
