// A bar chart of one series over every day of a month, as SVG (days without a value
// have no bar), with the numbers in a table beside it for screen readers and for
// reading exact values.

import { useId } from "react";

export function BarChart(props: {
  title: string;
  days: string[];
  values: (number | null)[];
  format: (n: number) => string;
}) {
  const known = props.values.flatMap((v, i) => (v === null ? [] : [[props.days[i], v] as const]));
  const id = useId();
  const w = 600;
  const h = 160;
  const pad = 4;
  const max = Math.max(1, ...known.map(([, v]) => v));
  const step = props.days.length ? (w - pad * 2) / props.days.length : 0;
  return (
    <figure className="chart" aria-labelledby={id}>
      <figcaption id={id}>{props.title}</figcaption>
      {known.length === 0 ? (
        <p>No days rolled up yet this month.</p>
      ) : (
        <>
          <svg viewBox={`0 0 ${w} ${h + 20}`} role="img" aria-label={`${props.title}, by day`}>
            <line x1={pad} y1={h} x2={w - pad} y2={h} className="axis" />
            {props.values.map((v, i) => {
              if (v === null) return null;
              const bh = (v / max) * (h - 10);
              return (
                <rect key={props.days[i]} x={pad + i * step + 1} y={h - bh} width={Math.max(1, step - 2)} height={bh}>
                  <title>{`${props.days[i]}: ${props.format(v)}`}</title>
                </rect>
              );
            })}
            <text x={pad} y={h + 16}>
              {props.days[0]}
            </text>
            <text x={w - pad} y={h + 16} textAnchor="end">
              {props.days[props.days.length - 1]}
            </text>
            <text x={w - pad} y={12} textAnchor="end">
              {props.format(max)}
            </text>
          </svg>
          <details>
            <summary>Numbers</summary>
            <table>
              <thead>
                <tr>
                  <th scope="col">Day</th>
                  <th scope="col">{props.title}</th>
                </tr>
              </thead>
              <tbody>
                {known.map(([day, v]) => (
                  <tr key={day}>
                    <td>{day}</td>
                    <td>{props.format(v)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </details>
        </>
      )}
    </figure>
  );
}
