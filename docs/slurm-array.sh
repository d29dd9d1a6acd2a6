#!/usr/bin/env bash
# csbsr segment as a Slurm job array: one shard per task, one GPU each, the image run by Apptainer
# (docs/docker.md). Make the image file once, on a login node:
#
#   apptainer build csbsr.sif docker://registry.example.com/inspection/csbsr:0.1.0-cuda13.0
#
# Submit the array, then the merge, which starts when every task has succeeded:
#
#   jobid=$(sbatch --parsable --export=ALL,FRAMES=/scratch/flight-12/frames,OUT=/scratch/results/flight-12 \
#           slurm-array.sh)
#   sbatch --dependency="afterok:$jobid" --job-name=csbsr-merge \
#          --wrap "apptainer run --bind /scratch/results/flight-12:/out csbsr.sif summary merge /out/summary.csv /out"
#
# `--shard auto` takes the shard from SLURM_ARRAY_TASK_ID (counted from the array's first index) and the
# count from SLURM_ARRAY_TASK_COUNT: change --array and nothing else. A failed task is re-run alone
# (sbatch --array=5 slurm-array.sh): --resume completes its shard.
#SBATCH --job-name=csbsr-segment
#SBATCH --array=0-7
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=24G
#SBATCH --time=04:00:00
#SBATCH --output=csbsr-%A_%a.log
set -euo pipefail

: "${FRAMES:?set FRAMES to the folder of input frames}"
: "${OUT:?set OUT to the run folder (shared by all tasks)}"
SIF="${SIF:-csbsr.sif}"
mkdir -p "$OUT"

# torch's CPU threads: what Slurm allocated, not the node's cores.
export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"

# Apptainer runs as the submitting user and passes the SLURM_* variables through; --nv binds the driver.
apptainer run --nv --bind "$FRAMES:/data/frames:ro,$OUT:/out" "$SIF" env --require-gpu
apptainer run --nv --bind "$FRAMES:/data/frames:ro,$OUT:/out" "$SIF" \
  segment /data/frames --shard auto -o /out --resume --device cuda --quiet
